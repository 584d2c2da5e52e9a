"""Checkpoints: atomic writes, rotation, and loading that never runs pickled code.

``last.pt`` holds the full training state (model, optimizer, scaler, step, generator state);
``step_NNNNNNN.pt`` files hold weights only and rotate (the last K are kept). Every checkpoint
carries the resolved config, a format version, package versions and the hardware it was
trained on, and loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .errors import CheckpointError
from .fileio import atomic_write

FORMAT_VERSION = 1
LAST = "last.pt"
BEST = "best.pt"  # the best validation score, outside the rotation


def environment() -> dict[str, Any]:
    """Package versions and hardware, as plain strings (stored in every checkpoint)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    hw = {"cpu": cpu, "cpu_count": str(os.cpu_count()), "platform": platform.platform()}
    if torch.cuda.is_available():
        hw["cuda_device"] = torch.cuda.get_device_name()
    return {
        "versions": {"biounet": __version__, "torch": str(torch.__version__), "numpy": str(np.__version__),
                     "python": sys.version.split()[0]},
        "hardware": hw,
    }


def atomic_save(obj: dict[str, Any], path: str | Path) -> None:
    """Write ``obj`` to ``path`` so that a crash leaves either the old file or the new one, whole."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            torch.save(obj, f)

    atomic_write(path, write, durable=True)


def load(path: str | Path) -> dict[str, Any]:
    """Load a biounet checkpoint safely (no code runs); a clear error for anything else."""
    path = Path(path)
    if path.is_dir():
        if not (path / LAST).is_file() and (path / "config.yaml").is_file():
            raise CheckpointError(f"run folder {path} has no {LAST}: the run stopped before its first checkpoint, "
                                  f"so there is nothing to continue; start it again with the same command "
                                  f"(without --resume)")
        path = path / LAST
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass a run folder that holds {LAST} "
                              f"or a .pt file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        reason = " ".join(str(exc).split())[:200] or "no message"  # a truncated file: a bare EOFError
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(exc).__name__}: "
                              f"{reason}); it may be truncated or not a biounet file") from None
    missing = [k for k in ("format_version", "model", "config", "step") if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} is not a biounet checkpoint (no {'/'.join(missing)} entries); pass a file "
                              f"written by `biounet train` (last.pt, best.pt or step_*.pt)")
    if not isinstance(ckpt["config"], dict) or not isinstance(ckpt["model"], dict):
        raise CheckpointError(f"{path} is damaged: its config or model entry is not a mapping; use another "
                              f"checkpoint of the run")
    if not isinstance(ckpt["format_version"], int) or ckpt["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {ckpt['format_version']}, newer than this biounet "
                              f"reads ({FORMAT_VERSION}); upgrade biounet")
    ckpt["path"] = str(path)
    return ckpt


def payload(config: dict[str, Any], step: int, model_state: dict[str, torch.Tensor],
            training_state: dict[str, Any] | None = None, train_digests: tuple[str, ...] = ()) -> dict[str, Any]:
    """A checkpoint dict: weights, config, metadata and, for last.pt, the training state.

    ``train_digests`` fingerprints the training images (readers.image_digest), so that scoring
    can refuse them wherever they are read from.
    """
    out = {"format_version": FORMAT_VERSION, "step": step, "config": config, "model": model_state,
           "train_digests": list(train_digests), **environment()}
    if training_state is not None:
        out["training_state"] = training_state
    return out


def step_name(step: int) -> str:
    return f"step_{step:07d}.pt"


def rotate(run_dir: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` step checkpoints; returns the deleted paths."""
    ckpts = sorted(Path(run_dir).glob("step_*.pt"))
    doomed = ckpts[:-keep] if keep > 0 else ckpts
    for p in doomed:
        p.unlink(missing_ok=True)
    return doomed
