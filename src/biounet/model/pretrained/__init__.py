"""Built-in models, shipped with the package: ``--model NAME`` runs one without any download.

Each model is ``NAME.pt`` (a biounet checkpoint, weights in float16 to stay small) beside
``NAME.json`` (what it is for, how it was trained, its scores, the terms of its training data).
Written by ``tools/make_pretrained.py`` from a finished training run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from biounet.core.errors import ConfigError

HERE = Path(__file__).resolve().parent


def builtin_models() -> dict[str, dict[str, Any]]:
    """NAME -> its metadata, for every model shipped with the package."""
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(HERE.glob("*.json"))}


def is_builtin(name: str) -> bool:
    return bool(name) and "/" not in name and (HERE / f"{name}.pt").is_file()


def builtin_path(name: str) -> Path:
    """The checkpoint of built-in model ``name``; an unknown name lists the known ones."""
    if not is_builtin(name):
        known = ", ".join(builtin_models()) or "none"
        raise ConfigError(f"{name!r} is not a built-in model (known: {known}); see `biounet models`")
    return HERE / f"{name}.pt"
