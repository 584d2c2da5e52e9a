"""Checkpoints: atomic writes, rotation, and loading that never runs pickled code; models and
predictors from checkpoints; the weights to fine-tune from; the config a resumed run continues with.

``last.pt`` holds the full training state (model, optimizer, scaler, step, generator state);
``step_NNNNNNN.pt`` files hold weights only and rotate (the last K are kept). Every checkpoint
carries the resolved config, a format version, package versions and the hardware it was
trained on, and loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from biounet import __version__
from biounet.core.config import TrainConfig, from_dict
from biounet.core.device import resolve_device
from biounet.core.errors import CheckpointError, ConfigError
from biounet.io.fileio import atomic_write
from biounet.model.unet import UNet, build_model

FORMAT_VERSION = 1
LAST = "last.pt"
BEST = "best.pt"  # the best validation score, outside the rotation

# Options that may change when a run is resumed: they affect speed and bookkeeping, not the
# samples, the model or the optimisation.
RESUMABLE_OVERRIDES = {
    "steps",
    "data",
    "masks",
    "log_every",
    "checkpoint_every",
    "keep_checkpoints",
    "progress",
    "device",
    "threads",
    "workers",
    "micro_batch_size",
    "resume",
    "val_every",
    "validation",
    "dist_timeout",
    "memory_gib",
    "compile",
    "val_tta",
}


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
        "versions": {
            "biounet": __version__,
            "torch": str(torch.__version__),
            "numpy": str(np.__version__),
            "python": sys.version.split()[0],
        },
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
            raise CheckpointError(
                f"run folder {path} has no {LAST}: the run stopped before its first checkpoint, "
                f"so there is nothing to continue; start it again with the same command "
                f"(without --resume)"
            )
        path = path / LAST
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass a run folder that holds {LAST} or a .pt file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        reason = " ".join(str(exc).split())[:200] or "no message"  # a truncated file: a bare EOFError
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(exc).__name__}: "
            f"{reason}); it may be truncated or not a biounet file"
        ) from None
    missing = [k for k in ("format_version", "model", "config", "step") if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise CheckpointError(
            f"{path} is not a biounet checkpoint (no {'/'.join(missing)} entries); pass a file "
            f"written by `biounet train` (last.pt, best.pt or step_*.pt)"
        )
    if not isinstance(ckpt["config"], dict) or not isinstance(ckpt["model"], dict):
        raise CheckpointError(
            f"{path} is damaged: its config or model entry is not a mapping; use another checkpoint of the run"
        )
    if not isinstance(ckpt["format_version"], int) or ckpt["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {ckpt['format_version']}, newer than this biounet "
            f"reads ({FORMAT_VERSION}); upgrade biounet"
        )
    ckpt["path"] = str(path)
    return ckpt


def payload(
    config: dict[str, Any],
    step: int,
    model_state: dict[str, torch.Tensor],
    training_state: dict[str, Any] | None = None,
    train_digests: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A checkpoint dict: weights, config, metadata and, for last.pt, the training state.

    ``train_digests`` fingerprints the training images (readers.image_digest), so that scoring
    can refuse them wherever they are read from.
    """
    out = {
        "format_version": FORMAT_VERSION,
        "step": step,
        "config": config,
        "model": model_state,
        "train_digests": list(train_digests),
        **environment(),
    }
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


@dataclass
class RunState:
    """What the training loop carries from step to step, and what its checkpoints save."""

    model: UNet
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    step: int = 0
    best: float = -1.0  # best validation dice_coeff so far
    train_digests: tuple[str, ...] = ()  # content fingerprints of the training images (see evaluate)


def save_run(run_dir: Path, cfg: TrainConfig, state: RunState, full: bool, rotated: bool) -> None:
    """Write the rotated ``step_N.pt`` (weights) and/or ``last.pt`` (the full training state) of ``state``."""
    model_state = {k: v.detach().cpu() for k, v in state.model.state_dict().items()}
    if rotated:
        atomic_save(
            payload(cfg.to_saved(), state.step, model_state, train_digests=state.train_digests),
            run_dir / step_name(state.step),
        )
        rotate(run_dir, cfg.keep_checkpoints)
    if full:
        training = {
            "optimizer": state.optimizer.state_dict(),
            "scaler": state.scaler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "best": state.best,
        }
        atomic_save(payload(cfg.to_saved(), state.step, model_state, training, state.train_digests), run_dir / LAST)


# --- loading models, fine-tuning, resuming ----------------------------------------------------


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder means its best checkpoint (else last.pt); a file means itself."""
    path = Path(path)
    if path.is_dir():
        for name in (BEST, LAST):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path} holds neither {BEST} nor {LAST}; pass a run folder or a .pt file")
    return path


def load_model(path: str | Path, device: str = "auto") -> tuple[UNet, TrainConfig, dict[str, Any]]:
    """(model in eval mode, its TrainConfig, the checkpoint dict) from a checkpoint or run folder."""
    ckpt = load(resolve_checkpoint(path))
    cfg = from_dict(ckpt["config"], source=ckpt["path"])
    model = build_model(cfg)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{ckpt['path']}: its weights do not fit its own config ({str(exc)[:200]})") from None
    return model.to(resolve_device(device)).eval(), cfg, ckpt


# The options of the network that --init-from's weights must fit, and the sample geometry they were
# trained on: a fine-tuning run takes them from the base model unless the user sets them.
NETWORK_FIELDS = (
    "base_width",
    "depth",
    "padding",
    "batch_norm",
    "in_channels",
    "context",
    "classes",
    "tile_size",
    "affinities",
    "membrane_mode",
)


def load_init_source(ref: str) -> dict[str, Any]:
    """The checkpoint ``--init-from`` names: a built-in model's name, a .pt file or a run folder (as
    ``--model`` reads one: its best.pt, else last.pt)."""
    from biounet.model.pretrained import builtin_path, is_builtin

    return load(builtin_path(ref) if is_builtin(ref) else resolve_checkpoint(ref))


def adopt_network(cfg: TrainConfig, explicit: dict[str, Any]) -> tuple[TrainConfig, dict[str, Any]]:
    """``cfg`` with the network of its ``--init-from`` model (:data:`NETWORK_FIELDS`) where the user set none
    of its own (``explicit``: the options given by flags or a YAML file), and the options so taken."""
    if not cfg.init_from or cfg.resume:
        return cfg, {}
    ckpt = load_init_source(cfg.init_from)
    base = from_dict(ckpt["config"], source=str(ckpt["path"]))  # migrated as every saved config
    taken = {k: getattr(base, k) for k in NETWORK_FIELDS if k not in explicit and getattr(base, k) != getattr(cfg, k)}
    return (cfg.replace(**taken) if taken else cfg), taken


def load_init(model: UNet, path: str) -> list[str]:
    """Copy weights from a checkpoint (or a built-in model's name) for fine-tuning; skips the output
    layer if its channels differ (classes, affinities)."""
    ckpt = load_init_source(path)
    state = ckpt["model"]
    own = model.state_dict()
    skipped = []
    for key in list(state):
        if key.startswith("head.") and key in own and state[key].shape != own[key].shape:
            skipped.append(key)
            del state[key]
    mismatched = [k for k in state if k in own and state[k].shape != own[k].shape]
    missing = [k for k in own if k not in state and k not in skipped]
    if mismatched or missing or set(state) - set(own):
        src = ckpt.get("config", {})
        raise CheckpointError(
            f"--init-from {path}: its network (base_width={src.get('base_width')}, depth={src.get('depth')}, "
            f"in_channels={src.get('in_channels')}, context={src.get('context', 0)}, "
            f"batch_norm={src.get('batch_norm')}) does not fit this one; drop the network options you set (the "
            f"run then takes the base model's), or set them as the base model has them (only --classes and "
            f"--affinities may differ)"
        )
    model.load_state_dict(state, strict=False)
    return skipped


def resume_config(cfg: TrainConfig, explicit: dict[str, Any]) -> tuple[TrainConfig, dict[str, Any]]:
    """The config a resumed run continues with: the checkpoint's, plus allowed explicit changes."""
    if cfg.resume is None:
        raise ValueError("resume_config needs cfg.resume")
    ckpt = load(cfg.resume)
    if "training_state" not in ckpt:
        raise CheckpointError(
            f"{ckpt['path']} holds weights only; resume from the run folder or its "
            f"{LAST} (or use --init-from to fine-tune from these weights)"
        )
    saved = from_dict(ckpt["config"], source=ckpt["path"])
    changed = {k: v for k, v in explicit.items() if getattr(saved, k) != v}
    refused = sorted(set(changed) - RESUMABLE_OVERRIDES - {"out"})
    if refused:
        raise ConfigError(
            f"--resume continues a run with its own settings; these differ from it: "
            f"{', '.join(f'{k}={changed[k]!r} (run: {getattr(saved, k)!r})' for k in refused)}. "
            f"Drop them, or start a new run with --init-from {ckpt['path']}"
        )
    run_dir = Path(ckpt["path"]).parent
    if "out" in changed and Path(changed["out"]).resolve() != run_dir.resolve():
        raise ConfigError(
            f"--out {changed['out']} differs from the resumed run's folder {run_dir}; a resumed "
            f"run continues in its own folder"
        )
    kept = {k: v for k, v in changed.items() if k not in ("out", "resume")}
    resumed = saved.replace(**kept, out=str(run_dir), resume=cfg.resume)
    return resumed.validate(), ckpt
