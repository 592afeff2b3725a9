"""Folders of preset files: ``NN_key.json``, listed in file-name (teaching) order.

Feedforward experiments, through-time experiments, comparisons and sweeps each keep
their presets in a folder of their own under ``assets/``; this module finds the
files and their keys, and each kind supplies its own loader and error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

_PRESET_NAME = re.compile(r"^(\d+)_(.+)$")  # "02_deep_sigmoid" -> key "deep_sigmoid"


def preset_files(directory: Path) -> list[tuple[str, Path]]:
    """(key, file) for every ``*.json`` in ``directory``, in file-name order; the key is
    the file name without its number prefix (the whole stem if it has none)."""
    if not directory.is_dir():
        return []
    found = []
    for file in sorted(directory.glob("*.json")):
        m = _PRESET_NAME.match(file.stem)
        found.append((m.group(2) if m else file.stem, file))
    return found


def preset_summaries(directory: Path, load: Callable, errors) -> list[tuple[str, str, str]]:
    """(key, name, description) of every preset in ``directory`` that ``load`` reads;
    a file that raises one of ``errors`` is skipped (loading it by key says why)."""
    out = []
    for key, file in preset_files(directory):
        try:
            item = load(file)
        except errors:
            continue
        out.append((key, item.name, item.description))
    return out


def find_preset(directory: Path, key: str) -> tuple[Path | None, str]:
    """(the file of preset ``key`` or None, the available keys as "a, b, c" or "none")."""
    files = preset_files(directory)
    for k, file in files:
        if k == key:
            return file, ""
    return None, ", ".join(k for k, _ in files) or "none"
