"""Every user-facing value of the command line checked in one place, before any work.

The training options (train, demo, cv) are one :class:`biounet.core.config.TrainConfig`, checked by its
``validate``; the other commands' values are checked here.
"""

from __future__ import annotations

import argparse

from biounet.core.config import check_device
from biounet.core.errors import ConfigError
from biounet.segment.tiling import MAX_TILE_SIDE


def check_inference_options(args: argparse.Namespace) -> None:
    """The inference flags of ``predict`` and ``evaluate``, checked before any file is read."""
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.threads < 0:
        raise ConfigError(f"--threads must not be negative, got {args.threads}")
    if args.tile is not None and not 1 <= args.tile <= MAX_TILE_SIDE:
        raise ConfigError(
            f"--tile {args.tile}: a tile side must be between 1 and {MAX_TILE_SIDE} pixels; omit "
            "--tile to let biounet choose"
        )
    check_device(args.device)


def checked_fold(fold: str, folds: int) -> str:
    """The fold ``evaluate`` scores: one of the model's ``folds``, or "none" (every image: a separate set)."""
    if fold == "none":
        return fold
    if fold == "all" or not (str(fold).isdigit() and 0 <= int(fold) < folds):
        raise ConfigError(
            f"--fold must be one of 0..{folds - 1} (the model's {folds} folds) or none (every image of a separate "
            f"labelled set), got {fold!r}"
            + ("; the model was trained on every image (--fold all), so name a fold to score" if fold == "all" else "")
        )
    return fold


def parse_micro_sweep(text: str) -> list[int]:
    """``bench --micro-sweep``: comma-separated micro-batch sizes."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--micro-sweep must be comma-separated integers, got {text!r}") from None


def parse_indices(text: str | None) -> list[int] | None:
    """``score --indices``: comma-separated slice numbers (None: all)."""
    if text is None:
        return None
    try:
        return [int(i) for i in text.split(",")]
    except ValueError:
        raise ConfigError(f"--indices must be comma-separated slice numbers, got {text!r}") from None


def check_timeout(timeout: float) -> float:
    """``fetch --timeout``: positive seconds."""
    if not 0 < timeout <= 1e6:  # NaN too; an infinite or huge one overflows the socket's timeout
        raise ConfigError(f"--timeout must be a positive number of seconds (at most 1e6), got {timeout}")
    return timeout


MIN_OPSET = 17  # torch.onnx writes opset 18; 17 converts cleanly, lower ones fail inside the converter


def check_opset(opset: int, fmt: str) -> int:
    """``export --opset``: an ONNX opset the exporter can write."""
    if fmt != "onnx":
        return opset
    try:
        from onnx.defs import onnx_opset_version
    except ImportError:
        return opset  # export_model says which packages to install
    newest = onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise ConfigError(
            f"--opset must be between {MIN_OPSET} and {newest} (the installed onnx's newest), got "
            f"{opset}; the default, 18, is what torch.onnx writes natively"
        )
    return opset
