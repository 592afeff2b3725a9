"""Short explanations for the Help menu and the "Why?" links of the diagnosis.

Texts use only <p>, <b> and <i> so any Qt rich-text widget can show them;
``Topic.plain`` gives the same text without tags. ``FINDING_TOPICS`` and
``REMEDY_TOPICS`` say which topic explains a finding kind or a remedy.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    key: str
    title: str
    text: str  # simple HTML: <p>, <b>, <i>

    @property
    def plain(self) -> str:
        """The text without tags, paragraphs separated by blank lines."""
        text = re.sub(r"</p>\s*<p>", "\n\n", self.text.strip())
        text = re.sub(r"</?(p|b|i)>", "", text)
        return html.unescape(text).strip()


_TOPICS = (
    Topic(
        "vanishing",
        "Vanishing gradients",
        "<p>Backpropagation hands the error signal down the network one layer at a time, and "
        "every layer multiplies it by its weights and by the slopes of its activation. When "
        "those multipliers are mostly smaller than one, the signal shrinks geometrically: "
        "after 20 layers that each keep half of it, about one millionth is left "
        "(0.5^20 ≈ 1e-6).</p>"
        "<p>The gradient is rarely exactly zero. It is just so small that the first layers "
        "hardly change while the last layers do all the learning. Typical signs: the "
        "update-to-weight ratio of the lowest layers is orders of magnitude below that of "
        "the top ones; the loss falls slowly or flattens after a few steps; saturated "
        "sigmoid/tanh units or dead ReLUs pile up.</p>"
        "<p>In the app, compare ||δ_k|| with ||δ_out||: the diagnosis flags a layer that "
        "receives less than a thousandth of the output layer's signal.</p>",
    ),
    Topic(
        "exploding",
        "Exploding gradients",
        "<p>The mirror image of vanishing: when the per-layer factors are mostly above one, "
        "the backpropagated signal grows geometrically on its way to the input. A factor of 2 "
        "per layer over 20 layers is a million-fold. The weight updates become huge, the loss "
        "jumps around or shoots up, and soon numbers overflow to infinity or NaN.</p>"
        "<p>Common causes are weights initialized too large (the chaotic phase of the "
        "mean-field picture), a learning rate so high that one update pushes the weights into "
        "that regime, or, in recurrent nets, a recurrent matrix that stretches vectors. "
        "Cures: pick an initialization whose per-layer factor is close to one (He for ReLU), "
        "clip the gradient norm, or lower the learning rate. Batch norm keeps each step "
        "from blowing up the activations, though at initialization it lets the gradient grow "
        "a little towards the input itself.</p>",
    ),
    Topic(
        "chain_rule",
        "The chain rule, layer by layer",
        "<p>Write a dense layer as z_k = a_(k−1) W_k + b_k and a_k = φ(z_k), and call "
        "δ_k = ∂L/∂z_k the error signal of layer k. The chain rule gives one step of "
        "backpropagation:</p>"
        "<p><i>δ_(k−1) = (δ_k W_k^T) ⊙ φ′(z_(k−1))</i></p>"
        "<p>So the signal that reaches layer 1 is the output's signal multiplied by every "
        "transposed weight matrix and every diagonal of slopes on the way down. Its size is "
        "roughly a product of per-layer factors, and a product of many numbers drifts towards "
        "zero or infinity unless the factors stay very close to one. The sigmoid has "
        "φ′ ≤ 1/4 everywhere, so with modest weights every sigmoid layer at least quarters "
        "the signal. From δ, the weight gradient follows as ∂L/∂W_k = a_(k−1)^T δ_k.</p>",
    ),
    Topic(
        "delta_vs_weight_gradient",
        "Why the app shows both δ and ∂L/∂W",
        "<p>The backpropagated signal δ_k = ∂L/∂z_k and the weight gradient "
        "∂L/∂W_k = a_(k−1)^T δ_k are different things. The weight gradient also contains the "
        "layer's input a_(k−1), and that factor can grow with depth just as δ shrinks. "
        "Glorot and Bengio (2010) showed networks in which the weight-gradient norm is almost "
        "the same in every layer while δ falls by orders of magnitude towards the input.</p>"
        "<p>A plot of weight gradients alone can therefore look healthy while the signal "
        "flowing back through the network is dying. Watching δ shows how much of the error "
        "reaches each layer; watching ∂L/∂W and the update-to-weight ratio shows how much "
        "each layer actually learns. The vanishing-gradient problem lives in the first; its "
        "consequences show in the second.</p>",
    ),
    Topic(
        "residual",
        "Residual (skip) connections",
        "<p>A skip link adds an earlier layer's output to a later one, for example "
        "a_(k+2) = φ(z_(k+2)) + a_k. Differentiating the sum, the error signal that reaches "
        "a_k has two parts: the part that went back through the skipped layers, and an exact "
        "copy of the later signal, delivered by the identity path, whose derivative is 1.</p>"
        "<p>Even when the skipped layers shrink their share to almost nothing, the copy "
        "survives. Stack such blocks and the gradient has a route from the output to the "
        "first layer that never passes through a small factor: the \"gradient superhighway\" "
        "that let He et al. (2016) train networks of over a hundred layers. Where the widths "
        "differ, the shortcut goes through a learned projection P instead of the identity, "
        "and that route is no longer perfectly clean.</p>",
    ),
    Topic(
        "relu",
        "ReLU instead of sigmoid or tanh",
        "<p>The rectifier φ(x) = max(0, x) has slope exactly 1 for positive inputs and 0 for "
        "negative ones. Sigmoid and tanh flatten out on both sides, so a unit with a large "
        "input of either sign passes on almost no gradient, and the sigmoid's slope never "
        "exceeds 1/4 even in the middle.</p>"
        "<p>An active ReLU hands the error signal back undiminished; only the weights scale "
        "it. With He initialization, Var[W] = 2/fan_in, which makes up for the half of the "
        "units that are off on average, the per-layer factor is about one and the gradient "
        "keeps its size over many layers. The price is that ReLU is flat on the negative "
        "side: a unit whose input is negative for every example stops learning altogether "
        "(see dying ReLUs).</p>",
    ),
    Topic(
        "dying_relu",
        "Dying ReLUs",
        "<p>A ReLU unit whose pre-activation is negative for every example in the batch "
        "outputs 0 and has derivative 0. No gradient flows through it, so neither its "
        "incoming weights nor its bias receive any signal, and it may never come back. The "
        "app counts such units per layer as the dead fraction.</p>"
        "<p>Units usually die after a large update pushes their bias far below zero, from an "
        "unlucky initialization, or when the inputs to a layer drift. A few dead units do no "
        "harm; when half a layer is dead, the layer has lost half its capacity and half of "
        "the paths the gradient could take through it. Remedies: a smaller learning rate, "
        "He initialization, batch norm, or a variant with a non-zero slope on the negative "
        "side (leaky ReLU, PReLU, ELU, SELU).</p>",
    ),
    Topic(
        "leaky_prelu_elu_selu",
        "Leaky ReLU, PReLU, ELU and SELU",
        "<p><b>Leaky ReLU</b> keeps φ(x) = x for positive x and uses a·x otherwise, with a "
        "small fixed slope (0.01 here), so a unit with negative input still passes a little "
        "gradient and can recover. <b>PReLU</b> makes a a parameter that is learned, "
        "starting at 0.25. He initialization for both uses Var[W] = 2/((1 + a²) fan_in).</p>"
        "<p><b>ELU</b> uses α(e^x − 1) on the negative side: smooth, levelling off at −α, "
        "and pulling the mean activation towards zero. <b>SELU</b> scales ELU by "
        "λ ≈ 1.0507 with α ≈ 1.6733. With LeCun normal weights, Var[W] = 1/fan_in, "
        "Klambauer et al. (2017) showed that mean 0 and variance 1 is an attracting fixed "
        "point: activations renormalize themselves from layer to layer, with no batch norm "
        "needed.</p>",
    ),
    Topic(
        "batchnorm",
        "Batch normalization",
        "<p>Batch norm standardizes each unit's pre-activation over the current mini-batch, "
        "then rescales it with two learned numbers per unit:</p>"
        "<p><i>x̂ = (x − μ_B) / √(σ_B² + ε),   y = γ x̂ + β</i></p>"
        "<p>The activation's input keeps a mean near 0 and a variance near 1, so sigmoid "
        "and tanh units stay in their steep middle instead of saturating, and training "
        "stays stable at larger learning rates. It does not level the gradient: at "
        "initialization ||δ|| <i>grows</i> on its way down to the input, because each "
        "layer divides the backward signal by the batch spread of its pre-activations. Per "
        "layer ||δ||² grows by about E[φ′(x)²] / Var[φ(x)] for x ~ N(0, 1) (Yang et al. 2019), "
        "π/(π−1) ≈ 1.47 for ReLU, so 30 ReLU layers with batch norm give the first layer "
        "roughly 180 times the output layer's gradient. The mean-field line in the gradient "
        "flow plot includes this factor. Batch norm also ties the examples of a batch "
        "together: with γ = 1 the gradient with respect to x sums to zero over the batch, "
        "and very small batches make the statistics noisy.</p>",
    ),
    Topic(
        "initialization",
        "Careful initialization",
        "<p>At the start of training the per-layer gradient factor is set by the weight "
        "variance alone. For a layer with n inputs, backpropagation multiplies the squared "
        "signal by about n·Var[W] times the mean squared slope of the activation, and the "
        "usual schemes choose Var[W] to make that product one:</p>"
        "<p><b>Glorot</b> (Xavier): Var[W] = 2/(n_in + n_out), for tanh-like units. "
        "<b>He</b>: Var[W] = 2/n_in for ReLU, 2/((1 + a²) n_in) with a leak a. "
        "<b>LeCun</b>: Var[W] = 1/n_in, for SELU. <b>Orthogonal</b>: an orthonormal matrix, "
        "which keeps the length of every vector exactly in a linear network.</p>"
        "<p>The older \"standard\" uniform U[−1/√n, 1/√n] gives n·Var[W] = 1/3: each layer "
        "shrinks the signal threefold before the activation even has its say.</p>",
    ),
    Topic(
        "edge_of_chaos",
        "Mean-field theory and the edge of chaos",
        "<p>For a wide random network with weights N(0, σ_w²/n) and biases N(0, σ_b²), the "
        "variance of a pre-activation settles, layer after layer, at a fixed point q* of</p>"
        "<p><i>q_k = σ_w² E[φ(√q_(k−1) z)²] + σ_b²,   z ~ N(0, 1)</i></p>"
        "<p>and every step down multiplies ||δ||² by about "
        "<i>χ₁ = σ_w² E[φ′(√q* z)²]</i>. Below 1 (the ordered phase) gradients vanish; "
        "above 1 (the chaotic phase) they explode; at χ₁ = 1 the network sits on the edge "
        "of chaos. The depth scale ξ = 1/|ln χ₁| counts the layers over which ||δ||² "
        "changes by a factor e, and Schoenholz et al. (2017) found that networks train only "
        "up to a small multiple of ξ. Tanh with σ_b = 0 is critical at σ_w = 1, ReLU at "
        "σ_w² = 2. The prediction panel computes these numbers for your network.</p>",
    ),
    Topic(
        "gradient_clipping",
        "Gradient clipping",
        "<p>Gradient-norm clipping (Pascanu et al. 2013) caps the length of the whole "
        "gradient vector g before the update is applied:</p>"
        "<p><i>if ||g|| &gt; θ:   g ← θ g / ||g||</i></p>"
        "<p>The direction is kept; only the step length is limited. A rare exploding step, "
        "which would otherwise throw the weights into a region of enormous loss or produce "
        "NaN, becomes an ordinary-sized step. Clipping is the standard cure for the exploding "
        "side of the problem, especially in recurrent networks, whose loss surfaces have "
        "steep cliffs. It does nothing for vanishing gradients: a tiny gradient is below the "
        "threshold and passes unchanged. The app clips at θ = 1.0.</p>",
    ),
    Topic(
        "lstm",
        "LSTM: an additive path through time",
        "<p>A plain recurrent net multiplies the error signal by W_hh^T diag(1 − h_t²) at "
        "every time step, so over long spans it vanishes or explodes just as it does in a "
        "deep stack of layers. The LSTM (Hochreiter and Schmidhuber 1997) adds a cell state "
        "that is updated by addition:</p>"
        "<p><i>c_t = f_t ⊙ c_(t−1) + i_t ⊙ g_t</i></p>"
        "<p>Along the cell path, ∂c_T/∂c_0 is simply the product of the forget gates f_t. "
        "Without a forget gate (the original \"constant error carousel\") it is exactly 1; "
        "with one, it stays near 1 while the gates stay open, which is why the forget-gate "
        "bias is usually initialized to 1. The signal still fades over very long spans, but "
        "far more slowly than through a tanh recurrence, so an LSTM can learn dependencies "
        "hundreds of steps long.</p>",
    ),
    Topic(
        "layerwise_pretraining",
        "Greedy layer-wise pretraining",
        "<p>Before good initializations, ReLUs and skip links, deep networks were trained in "
        "stages (Hinton et al. 2006; Bengio et al. 2007). First one layer is trained alone, "
        "for instance as an autoencoder that reconstructs its own input, without labels. "
        "It is then frozen, its outputs feed the next layer, which is trained the same way, "
        "and so on up the stack. Each stage is a shallow problem, so no gradient ever has to "
        "cross many layers.</p>"
        "<p>Finally an output layer goes on top and the whole network is fine-tuned with "
        "ordinary backpropagation. The pretrained weights give the lower layers useful "
        "features instead of random noise, so it matters less that they receive only a weak "
        "gradient during fine-tuning. The other remedies have mostly replaced this "
        "procedure, but it shows that a hierarchy can be built one level at a time.</p>",
    ),
    Topic(
        "saturation",
        "Saturated units",
        "<p>Sigmoid, tanh and softsign flatten out for large inputs: the sigmoid's slope "
        "drops below 0.01 once |x| exceeds about 4.6, tanh's once |x| exceeds about 3. A "
        "unit whose inputs sit in these flat tails is saturated: its output barely changes, "
        "and since backpropagation multiplies by φ′, it passes almost no gradient to the "
        "layers below. The app counts a unit as saturated when its mean derivative over the "
        "batch is below 0.001.</p>"
        "<p>Saturation comes from weights that are too large, inputs that are not "
        "standardized, or a learning rate that pushes pre-activations far out. Glorot and "
        "Bengio (2010) watched the top hidden layer of a deep sigmoid network saturate near "
        "0 early in training. Batch norm, smaller initial weights or a switch to ReLU keep "
        "units in their responsive range.</p>",
    ),
    Topic(
        "update_ratio",
        "The update-to-weight ratio",
        "<p>For each layer the app divides the size of the last update by the size of the "
        "weights: ||ΔW_k|| / ||W_k||. This says how fast the layer is changing, whatever its "
        "scale. A common rule of thumb puts a healthy value around 1e-3 per step. Much "
        "smaller (1e-5 and below) means the layer is practically frozen; much larger (1e-1) "
        "means each step rewrites a good part of the layer, which risks overshooting, "
        "killing ReLUs or diverging.</p>"
        "<p>Compared across layers, it is the most direct sign of a vanishing gradient: the "
        "top layers move at 1e-3 while the bottom ones crawl at 1e-8. The weight change "
        "since the start, ||W_k − W_k(0)|| / ||W_k(0)||, adds up this movement over the "
        "whole run. If every layer's ratio is tiny, the learning rate itself may be too "
        "low.</p>",
    ),
)

TOPICS: dict[str, Topic] = {t.key: t for t in _TOPICS}

# Which topic a "Why?" link next to a finding opens.
FINDING_TOPICS: dict[str, str] = {
    "vanishing": "vanishing",
    "exploding": "exploding",
    "dead_network": "dying_relu",
    "dead_units": "dying_relu",
    "saturation": "saturation",
    "stalled": "update_ratio",
    "diverged": "exploding",
    "healthy": "chain_rule",
}

# Which topic explains a remedy button.
REMEDY_TOPICS: dict[str, str] = {
    "relu": "relu",
    "leaky_relu": "leaky_prelu_elu_selu",
    "revive": "initialization",
    "leaky_revive": "leaky_prelu_elu_selu",
    "residual": "residual",
    "batchnorm": "batchnorm",
    "he_init": "initialization",
    "lecun_selu": "leaky_prelu_elu_selu",
    "clip_norm": "gradient_clipping",
    "lower_lr": "update_ratio",
    "raise_lr": "update_ratio",
}


def topic_for_finding(kind: str) -> Topic:
    return TOPICS[FINDING_TOPICS[kind]]


def topic_for_remedy(key: str) -> Topic:
    return TOPICS[REMEDY_TOPICS[key]]
