"""The help texts exist, are the right length, and every link points somewhere."""

import re

import pytest

from simulator.diagnosis import KINDS, REMEDIES
from simulator.glossary import (
    FINDING_TOPICS,
    REMEDY_TOPICS,
    TOPICS,
    Topic,
    topic_for_finding,
    topic_for_remedy,
)

REQUIRED = (
    "vanishing", "exploding", "chain_rule", "delta_vs_weight_gradient", "residual", "relu",
    "dying_relu", "leaky_prelu_elu_selu", "batchnorm", "initialization", "edge_of_chaos",
    "gradient_clipping", "lstm", "layerwise_pretraining", "saturation", "update_ratio",
)


def test_required_topics_exist():
    assert set(REQUIRED) <= set(TOPICS)


@pytest.mark.parametrize("key", sorted(TOPICS))
def test_topic_is_well_formed(key):
    t = TOPICS[key]
    assert isinstance(t, Topic)
    assert t.key == key
    assert t.title.strip()
    words = len(t.plain.split())
    assert 80 <= words <= 200, f"{key}: {words} words"
    # only <p>, <b>, <i> tags, balanced; no stray '<' or '&' that rich text would eat
    tags = re.findall(r"</?([a-zA-Z]+)>", t.text)
    assert set(tags) <= {"p", "b", "i"}
    for tag in ("p", "b", "i"):
        assert t.text.count(f"<{tag}>") == t.text.count(f"</{tag}>")
    stripped = re.sub(r"</?(p|b|i)>", "", t.text)
    assert "<" not in stripped
    assert re.search(r"&(?!(gt|lt|amp);)", stripped) is None
    assert "<" not in t.plain and "&gt;" not in t.plain


def test_plain_text_unescapes_and_separates_paragraphs():
    plain = TOPICS["gradient_clipping"].plain
    assert "||g|| > θ" in plain
    assert "\n\n" in plain


def test_every_finding_kind_and_remedy_has_a_topic():
    assert set(FINDING_TOPICS) == set(KINDS)
    assert set(REMEDY_TOPICS) == set(REMEDIES)
    for key in (*FINDING_TOPICS.values(), *REMEDY_TOPICS.values()):
        assert key in TOPICS
    assert topic_for_finding("dead_units").key == "dying_relu"
    assert topic_for_remedy("clip_norm").key == "gradient_clipping"


def test_formulas_are_present():
    assert "χ₁ = σ_w² E[φ′(√q* z)²]" in TOPICS["edge_of_chaos"].plain
    assert "δ_(k−1) = (δ_k W_k^T) ⊙ φ′(z_(k−1))" in TOPICS["chain_rule"].plain
    assert "c_t = f_t ⊙ c_(t−1) + i_t ⊙ g_t" in TOPICS["lstm"].plain
    assert "2/(n_in + n_out)" in TOPICS["initialization"].plain
