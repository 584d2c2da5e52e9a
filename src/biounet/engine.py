"""The training engine: plain functions, no callback framework.

``train(cfg)`` builds everything from one resolved :class:`TrainConfig`, runs ``train_step``
per optimizer step and writes the run folder: ``config.yaml``, ``metrics.jsonl``, checkpoints
(``last.pt`` with the full state, rotated ``step_*.pt`` weights) and ``loss.png``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from . import checkpoint as ckpt_io
from .config import TrainConfig, from_dict, save_yaml
from .data import AugmentConfig, IGNORE, TileDataset, TileSampler, kfold_split, read_dataset, weight_maps
from .data.readers import SegmentationData, image_digest
from . import distributed
from .device import (autocast, available_memory_bytes, compile_failed, compiled, grad_scaler, is_compile_error,
                     memory_format, resolve_compile, resolve_precision, set_threads, tune_for_fixed_shapes)
from .distributed import DistInfo
from .errors import CheckpointError, ConfigError, TrainingDiverged
from .fileio import atomic_write, atomic_write_text, check_output_dir
from .model import UNet, check_input_size, output_size

# Options that may change when a run is resumed: they affect speed and bookkeeping, not the
# samples, the model or the optimisation.
RESUMABLE_OVERRIDES = {"steps", "data", "log_every", "checkpoint_every", "keep_checkpoints", "progress",
                       "device", "threads", "workers", "micro_batch_size", "resume", "val_every", "validation",
                       "dist_timeout", "memory_gib", "compile", "val_tta"}
# Fault injection for tests of a dying rank: rank R kills itself right after the checkpoint of step K.
FAULT_RANK, FAULT_STEP = "BIOUNET_FAULT_KILL_RANK", "BIOUNET_FAULT_KILL_AFTER_STEP"


def build_model(cfg: TrainConfig) -> UNet:
    """The U-Net described by ``cfg``, its weights drawn from a generator seeded by ``cfg.seed``."""
    gen = torch.Generator().manual_seed(cfg.seed)
    return UNet(in_channels=cfg.in_channels, num_classes=cfg.classes, base_width=cfg.base_width,
                depth=cfg.depth, padding=cfg.padding, batch_norm=cfg.batch_norm, generator=gen)


def tile_geometry(cfg: TrainConfig) -> tuple[int, int]:
    """(input tile, output tile) side lengths; a clear error for a tile the network cannot take."""
    if cfg.padding == "valid":
        try:
            return cfg.tile_size, output_size(cfg.tile_size, cfg.depth)
        except ConfigError as exc:
            raise ConfigError(f"--tile-size: {exc}") from None
    check_input_size((cfg.tile_size, cfg.tile_size), cfg.depth, "same")
    return cfg.tile_size, cfg.tile_size


def pixel_loss_sum(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Sum over pixels of weight * softmax cross-entropy, in float32; ignored pixels add nothing.

    logits: (N, C, H, W); target: (N, H, W) int64 with IGNORE; weight: (N, H, W) float32.
    """
    ce = F.cross_entropy(logits.float(), target, reduction="none", ignore_index=IGNORE)
    return (ce * weight).sum()


def soft_dice_loss_sum(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum over the images of 1 - soft dice, the reference's ``dice_coeff`` per image: 2 <p, y> /
    (<p, p> + <y, y>) over every class channel of the softmax p and one-hot y, ignored pixels
    left out. A sum over images, so micro-batches add up to the whole batch's value."""
    probs = logits.float().softmax(1)
    valid = (target != IGNORE).unsqueeze(1)
    onehot = F.one_hot(target.clamp(min=0), probs.shape[1]).permute(0, 3, 1, 2).float() * valid
    probs = probs * valid
    inter = (probs * onehot).sum((1, 2, 3))
    denom = (probs * probs).sum((1, 2, 3)) + (onehot * onehot).sum((1, 2, 3))
    return (1 - 2 * inter / denom.clamp(min=1e-6)).sum()


def _meta_model(cfg: TrainConfig) -> UNet:
    """The network with shapes only (no memory, no initialisation cost), for estimates."""
    with torch.device("meta"):
        return build_model(cfg.replace(seed=0))


def activation_bytes_per_sample(cfg: TrainConfig, precision: str) -> int:
    """Estimated memory one training sample's activations take (forward saved tensors + backward).

    Runs the network on the meta device (shapes only, no memory) and adds up the outputs of
    every layer, at 2 bytes under bf16/fp16 autocast and 4 in fp32 (in-place ReLUs add nothing).
    Pooling indices (int64) count 8 bytes. A factor covers autograd's extra copies and the
    gradient buffers of the backward pass; it was calibrated against the peak resident memory
    of a 572x572 step (width 16 and 64, fp32: 0.2 and 0.8 GiB per sample).
    """
    model = _meta_model(cfg)
    total = 0
    elem = 4 if precision == "fp32" else 2

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, torch.nn.ReLU) and module.inplace:
            return
        n = output.numel()
        total += n * (elem + 8 if isinstance(module, torch.nn.MaxPool2d) else elem)

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    with torch.no_grad():
        model(torch.empty(1, cfg.in_channels, cfg.tile_size, cfg.tile_size, device="meta"))
    for h in handles:
        h.remove()
    return int(total * 1.6)


# On the CPU a single 572x572 tile already keeps every core busy: at width 64 in float32 micro-
# batches of 1, 2 and 4 trained at 0.064, 0.061 and 0.059 images/s with 1.6, 2.4 and 4.1 GiB
# resident (README, Performance), so activations beyond this buy no speed, only memory.
CPU_ACTIVATION_CAP = 1 * 2**30


def choose_micro_batch(cfg: TrainConfig, per_rank_batch: int, device: torch.device, precision: str) -> int:
    """The largest divisor of the batch whose activations fit the memory budget.

    The budget is ``cfg.memory_gib`` when set, else half the free memory; on the CPU the
    activations are also capped at ``CPU_ACTIVATION_CAP``.
    """
    if cfg.micro_batch_size:
        return cfg.micro_batch_size
    params = sum(p.numel() for p in _meta_model(cfg).parameters())
    state = params * 4 * 4  # weights, gradients, two Adam moments
    if cfg.memory_gib:
        budget = cfg.memory_gib * 2**30 - state
    else:
        budget = 0.5 * available_memory_bytes(device) - state
        if device.type == "cpu":
            budget = min(budget, CPU_ACTIVATION_CAP)
    per_sample = activation_bytes_per_sample(cfg, precision)
    divisors = [d for d in range(per_rank_batch, 0, -1) if per_rank_batch % d == 0]
    return next((d for d in divisors if d * per_sample <= budget), 1)


class StepBatches:
    """Micro-batches of global sample indices, step after step: what the DataLoader fetches.

    Step s draws samples s * batch .. s * batch + batch - 1; ``rank`` of ``world`` processes
    takes a contiguous share, cut into micro-batches.
    """

    def __init__(self, first_step: int, last_step: int, batch: int, micro: int, rank: int = 0, world: int = 1):
        self.first_step, self.last_step = first_step, last_step
        self.batch, self.micro, self.rank, self.world = batch, micro, rank, world

    def __iter__(self) -> Iterator[list[int]]:
        share = self.batch // self.world
        for step in range(self.first_step, self.last_step):
            start = step * self.batch + self.rank * share
            for k in range(0, share, self.micro):
                yield list(range(start + k, start + k + self.micro))

    def __len__(self) -> int:
        return (self.last_step - self.first_step) * (self.batch // self.world // self.micro)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Adam:
    """Adam with L2 weight decay, as the reference; the fused kernel (one pass over all
    parameters) on CUDA and CPU, where this PyTorch has it."""
    try:
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                fused=device.type in ("cuda", "cpu"))
    except (RuntimeError, TypeError):  # an older PyTorch or a device without the fused kernel
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Learning rate of optimizer step ``step`` (1-based): a pure function of the step, so a
    resumed run follows the same schedule without any saved scheduler state."""
    if step <= cfg.warmup_steps:
        return cfg.lr * step / cfg.warmup_steps
    span = max(cfg.steps - cfg.warmup_steps, 1)
    done = min((step - 1 - cfg.warmup_steps) / span, 1.0)
    if cfg.lr_schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * done))
    if cfg.lr_schedule == "poly":
        return cfg.lr * (1.0 - done)
    return cfg.lr


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
               micro_batches: list[tuple[torch.Tensor, ...]], device: torch.device, precision: str,
               step: int, dist_info: DistInfo = DistInfo(), dice_weight: float = 0.0) -> float:
    """One optimizer step over a global batch given as micro-batches; returns its loss (the mean
    pixel cross-entropy, plus the weighted dice term when ``dice_weight`` is set).

    Each micro-batch's loss sum is divided by the pixel count of the whole global batch (summed
    over all processes), so the accumulated gradient is the same whatever the micro-batch split
    or the number of processes. DistributedDataParallel averages gradients over the processes,
    so each process's loss is scaled by the world size to turn that average into the sum.
    ``dice_weight`` adds that weight times the mean over the batch's images of 1 - soft dice.
    """
    local_pixels = sum(int((m != IGNORE).sum()) for _, m, _ in micro_batches)
    n_pixels = distributed.all_sum(local_pixels, dist_info, device)
    n_images = sum(len(m) for _, m, _ in micro_batches) * dist_info.world
    if n_pixels == 0:
        raise TrainingDiverged(f"step {step}: every pixel of the batch is ignored; check --ignore-value")
    optimizer.zero_grad(set_to_none=True)
    total = torch.zeros((), device=device)
    for k, (images, masks, weights) in enumerate(micro_batches):
        images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format(device, precision))
        masks, weights = masks.to(device, non_blocking=True), weights.to(device, non_blocking=True)
        # gradients are exchanged once per step, at the last micro-batch (nanoGPT's habit)
        sync = not dist_info.enabled or k == len(micro_batches) - 1
        with contextlib.nullcontext() if sync else model.no_sync():
            with autocast(device, precision):
                logits = model(images)
            loss = pixel_loss_sum(logits, masks, weights) / n_pixels
            if dice_weight:
                loss = loss + dice_weight * soft_dice_loss_sum(logits, masks) / n_images
            scaler.scale(loss * dist_info.world).backward()
        total += loss.detach()
    value = distributed.all_sum(float(total), dist_info, device)
    if not math.isfinite(value):
        raise TrainingDiverged(f"the loss is {value} at step {step}: training diverged. Checkpoints already "
                               f"written are intact; lower --lr, or try --precision fp32")
    scaler.step(optimizer)
    scaler.update()
    return value


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C, and what schedulers send before a kill


@contextlib.contextmanager
def _deferred_interrupt():
    """Hold Ctrl-C and SIGTERM until the block ends, then raise KeyboardInterrupt: the step in flight
    completes and is counted, so the weights, the step number and metrics.jsonl always agree when
    last.pt is saved."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []

    def hold(signum, frame):
        if not received:
            print("stop requested: finishing the current step, then saving last.pt", file=sys.stderr, flush=True)
        received.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        raise KeyboardInterrupt


def _sigterm_as_interrupt():
    """Make SIGTERM stop training as Ctrl-C does (last.pt saved, the --resume command printed);
    returns the function that restores the previous handler."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    return lambda: signal.signal(signal.SIGTERM, previous)


@dataclass
class RunState:
    """What the loop carries from step to step."""

    model: UNet
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    step: int = 0
    best: float = -1.0  # best validation dice_coeff so far
    train_digests: tuple[str, ...] = ()  # content fingerprints of the training images (see evaluate)


def _run_dir(cfg: TrainConfig) -> Path:
    if cfg.out:
        return Path(cfg.out)
    name = cfg.name or datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / name


def check_new_run_dir(run_dir: Path) -> None:
    """Refuse to start a new run in a folder that holds one (its checkpoints would be overwritten), or
    in a path that is not a writable folder."""
    check_output_dir(run_dir, "--out")
    if (run_dir / ckpt_io.LAST).exists():
        raise ConfigError(f"run folder {run_dir} already holds a run; continue it with --resume {run_dir} "
                          f"or choose another --out")


def _load_init(model: UNet, path: str) -> list[str]:
    """Copy weights from a checkpoint for fine-tuning; skips the output layer if classes differ."""
    ckpt = ckpt_io.load(path)
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
            f"in_channels={src.get('in_channels')}, batch_norm={src.get('batch_norm')}) does not fit this one; "
            f"set the same architecture options (only --classes may differ)")
    model.load_state_dict(state, strict=False)
    return skipped


def resume_config(cfg: TrainConfig, explicit: dict[str, Any]) -> tuple[TrainConfig, dict[str, Any]]:
    """The config a resumed run continues with: the checkpoint's, plus allowed explicit changes."""
    ckpt = ckpt_io.load(cfg.resume)
    if "training_state" not in ckpt:
        raise CheckpointError(f"{ckpt['path']} holds weights only; resume from the run folder or its "
                              f"{ckpt_io.LAST} (or use --init-from to fine-tune from these weights)")
    saved = from_dict(ckpt["config"], source=ckpt["path"])
    changed = {k: v for k, v in explicit.items() if getattr(saved, k) != v}
    refused = sorted(set(changed) - RESUMABLE_OVERRIDES - {"out"})
    if refused:
        raise ConfigError(
            f"--resume continues a run with its own settings; these differ from it: "
            f"{', '.join(f'{k}={changed[k]!r} (run: {getattr(saved, k)!r})' for k in refused)}. "
            f"Drop them, or start a new run with --init-from {ckpt['path']}")
    run_dir = Path(ckpt["path"]).parent
    if "out" in changed and Path(changed["out"]).resolve() != run_dir.resolve():
        raise ConfigError(f"--out {changed['out']} differs from the resumed run's folder {run_dir}; a resumed "
                          f"run continues in its own folder")
    kept = {k: v for k, v in changed.items() if k not in ("out", "resume")}
    resumed = saved.replace(**kept, out=str(run_dir), resume=cfg.resume)
    return resumed.validate(), ckpt


class Logger:
    """Writes metrics.jsonl, prints a line every ``log_every`` steps, and drives a progress bar."""

    def __init__(self, run_dir: Path, cfg: TrainConfig, first_step: int, quiet: bool = False, write: bool = True):
        self.path = run_dir / "metrics.jsonl"
        self.write = write
        if write:
            self._truncate(first_step)
        self.cfg, self.quiet = cfg, quiet
        show_bar = cfg.progress == "on" or (cfg.progress == "auto" and sys.stderr.isatty())
        self.bar = None
        if show_bar and not quiet:
            from tqdm import tqdm
            self.bar = tqdm(total=cfg.steps, initial=first_step, unit="step", dynamic_ncols=True, leave=False)
        self.window_images, self.window_time, self.window_loss = 0, 0.0, []
        self.losses, self.rates = [], []  # this session's steps, for the summary

    def _truncate(self, step: int) -> None:
        """Drop log rows past ``step``: a run killed after its last checkpoint logged steps it redoes.

        A hard kill (SIGKILL, power cut) in the middle of an append leaves a torn last line without
        its newline: it is dropped as well (its step is redone), as is any other line that does not
        parse, so that the next append starts a line of its own and no reader of the log chokes.
        """
        for path in (self.path, self.path.with_name("validation.jsonl")):
            if not path.is_file():
                continue
            text = path.read_text(errors="replace")
            keep = [x for x in text.splitlines() if (row_step := self._row_step(x)) is not None and row_step <= step]
            fixed = "".join(x + "\n" for x in keep)
            if fixed != text:
                atomic_write_text(path, fixed)

    @staticmethod
    def _row_step(line: str) -> int | None:
        """The step of a metrics/validation row; None for a blank, torn or foreign line."""
        try:
            row = json.loads(line)
        except ValueError:
            return None
        step = row.get("step") if isinstance(row, dict) else None
        return step if isinstance(step, int) and not isinstance(step, bool) else None

    def info(self, text: str) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def step(self, step: int, loss: float, images: int, seconds: float, lr: float | None = None) -> None:
        self.window_images += images
        self.window_time += seconds
        self.window_loss.append(loss)
        self.losses.append(loss)
        self.rates.append(images / seconds)
        if not self.write:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, "loss": loss, "images_per_s": images / seconds,
                                "step_s": seconds, "lr": lr, "time": time.time()}) + "\n")
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}")
        if step % self.cfg.log_every == 0 or step == self.cfg.steps:
            rate = self.window_images / self.window_time
            eta = (self.cfg.steps - step) * self.window_time / len(self.window_loss)
            self.info(f"step {step}/{self.cfg.steps}  loss {np.mean(self.window_loss):.4f}  "
                      f"images/s {rate:.2f}  eta {_hms(eta)}")
            self.window_images, self.window_time, self.window_loss = 0, 0.0, []

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def plot_loss(run_dir: Path) -> Path | None:
    """Write loss.png from metrics.jsonl (raw loss and a moving average); atomic like checkpoints."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([r["step"] for r in rows])
    loss = np.array([r["loss"] for r in rows])
    val_path = run_dir / "validation.jsonl"
    val = [json.loads(x) for x in val_path.read_text().splitlines() if x.strip()] if val_path.is_file() else []
    fig, axes = plt.subplots(1, 2 if val else 1, figsize=(12 if val else 7, 4), dpi=100, squeeze=False)
    ax = axes[0, 0]
    ax.plot(steps, loss, lw=0.8, alpha=0.45, label="loss per step")
    k = max(1, len(loss) // 20)
    if k > 1:
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], smooth, lw=1.8, label=f"mean of {k} steps")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy per pixel")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"{run_dir.name}: training loss")
    if val:
        vx = axes[0, 1]
        vsteps = [r["step"] for r in val]
        for key in ("dice_coeff", "v_rand", "v_info"):
            if key in val[0]:
                vx.plot(vsteps, [r[key] for r in val], marker="o", label=key)
        vx.set_xlabel("step")
        vx.set_title("validation (held-out fold, full resolution)")
        vx.grid(alpha=0.3)
        vx.legend()
    fig.tight_layout()
    out = atomic_write(run_dir / "loss.png", lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return out


def _save(run_dir: Path, cfg: TrainConfig, state: RunState, full: bool, rotated: bool) -> None:
    model_state = {k: v.detach().cpu() for k, v in state.model.state_dict().items()}
    if rotated:
        ckpt_io.atomic_save(ckpt_io.payload(cfg.to_saved(), state.step, model_state, train_digests=state.train_digests),
                            run_dir / ckpt_io.step_name(state.step))
        ckpt_io.rotate(run_dir, cfg.keep_checkpoints)
    if full:
        training = {"optimizer": state.optimizer.state_dict(), "scaler": state.scaler.state_dict(),
                    "torch_rng": torch.get_rng_state(), "best": state.best}
        ckpt_io.atomic_save(ckpt_io.payload(cfg.to_saved(), state.step, model_state, training, state.train_digests),
                            run_dir / ckpt_io.LAST)


def validate(state: RunState, cfg: TrainConfig, data: SegmentationData, val_idx: list[int],
             device: torch.device, precision: str, run_dir: Path, log: "Logger") -> dict[str, Any]:
    """Segment and score the held-out images; keep best.pt when dice_coeff improves."""
    from .evaluate import evaluate_images
    from .inference import torch_predictor

    state.model.eval()
    try:
        report = evaluate_images(torch_predictor(state.model, device, precision), data, val_idx, cfg.depth,
                                 cfg.padding, tta=cfg.val_tta)
    finally:
        state.model.train()
    row = {"step": state.step, "tta": cfg.val_tta, **{k: v for k, v in report.items() if k not in ("per_image", "n_images")}}
    with open(run_dir / "validation.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    shown = "  ".join(f"{k} {report[k]:.4f}" for k in ("dice_coeff", "dice_coeff_388", "pixel_error", "v_rand",
                                                         "v_info") if k in report)
    improved = report["dice_coeff"] > state.best
    if improved:
        state.best = report["dice_coeff"]
        weights = {k: v.detach().cpu() for k, v in state.model.state_dict().items()}
        best = ckpt_io.payload(cfg.to_saved(), state.step, weights, train_digests=state.train_digests)
        best["validation"] = row
        ckpt_io.atomic_save(best, run_dir / ckpt_io.BEST)
    log.info(f"validation at step {state.step} on {len(val_idx)} images: {shown}" + ("  (best so far)" if improved else ""))
    return report


def train(cfg: TrainConfig, explicit: dict[str, Any] | None = None, data: SegmentationData | None = None,
          quiet: bool = False, validate_at_end: bool = True) -> dict[str, Any]:
    """Train a U-Net as ``cfg`` says; returns a summary (also written to summary.json).

    ``explicit`` names the options the user set (for --resume); ``data`` may pass a dataset
    already in memory instead of reading ``cfg.data``. ``validate_at_end=False`` skips the
    validation of the final step (``biounet cv`` scores the final weights itself).
    """
    ckpt = None
    if cfg.resume:
        cfg, ckpt = resume_config(cfg, explicit or {})
    cfg.validate()
    info, device = distributed.setup(cfg.device, cfg.dist_timeout)
    try:
        return _train(cfg, ckpt, info, device, data, quiet, validate_at_end)
    finally:
        distributed.teardown(info)


def _train(cfg: TrainConfig, ckpt: dict[str, Any] | None, info: DistInfo, device: torch.device,
           data: SegmentationData | None, quiet: bool, validate_at_end: bool) -> dict[str, Any]:
    run_dir = _run_dir(cfg)
    if ckpt is None:
        check_new_run_dir(run_dir)  # before any work: a folder that cannot take the run fails at once
    precision = resolve_precision(cfg.precision, device)
    tune_for_fixed_shapes(device)
    if info.enabled and device.type == "cpu" and not cfg.threads:
        threads = set_threads(distributed.cpu_threads_per_process(info))
    else:
        threads = set_threads(cfg.threads)
    if cfg.batch_size % info.world:
        raise ConfigError(f"--batch-size {cfg.batch_size} does not divide over {info.world} processes; "
                          f"use a multiple of {info.world}")
    share = cfg.batch_size // info.world
    in_tile, out_tile = tile_geometry(cfg)
    if data is None:
        if not cfg.data:
            raise ConfigError("--data is required: the ISBI 2012 folder or a folder with images/ and masks/")
        data = read_dataset(cfg.data, cfg.classes, cfg.in_channels, cfg.ignore_value, cfg.mask_threshold)
    train_idx, val_idx = kfold_split(len(data), cfg.fold, cfg.folds)
    maps = weight_maps([data.masks[i] for i in train_idx], cfg.classes, cfg.border_weight,
                       cfg.border_sigma, cfg.class_balance)
    weights = dict(zip(train_idx, maps)) if maps is not None else None
    augment = AugmentConfig(cfg.flip, cfg.rotate90, cfg.elastic, cfg.elastic_sigma, cfg.elastic_grid,
                            cfg.brightness, cfg.contrast)
    sampler = TileSampler(data, train_idx, in_tile, out_tile, augment, cfg.seed, weights)

    if cfg.micro_batch_size and share % cfg.micro_batch_size:
        # e.g. resumed with another world size: the recorded micro-batch no longer divides the share
        cfg = cfg.replace(micro_batch_size=0)
    micro = distributed.broadcast(choose_micro_batch(cfg, share, device, precision), info)
    cfg = cfg.replace(micro_batch_size=micro)
    distributed.barrier(info)  # every rank has looked before rank 0 writes anything
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)

    model = build_model(cfg).to(device).to(memory_format=memory_format(device, precision))
    optimizer = make_optimizer(model, cfg, device)
    state = RunState(model, optimizer, grad_scaler(device, precision),
                     train_digests=tuple(image_digest(data.images[i]) for i in train_idx))
    log = Logger(run_dir, cfg, ckpt["step"] if ckpt else 0, quiet or not info.is_main, write=info.is_main)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["training_state"]["optimizer"])
        state.scaler.load_state_dict(ckpt["training_state"]["scaler"])
        torch.set_rng_state(ckpt["training_state"]["torch_rng"])
        state.step = ckpt["step"]
        state.best = ckpt["training_state"].get("best", -1.0)
        log.info(f"resuming {run_dir} at step {state.step}")
    elif cfg.init_from:
        skipped = _load_init(model, cfg.init_from)
        log.info(f"initialised from {cfg.init_from}" + (f" (skipped {', '.join(skipped)}: class count differs)"
                                                         if skipped else ""))
    if info.is_main:
        save_yaml(cfg, run_dir / "config.yaml")
    # every rank starts from the same weights: built from the same seed, or loaded from the same file
    net = model
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel

        if cfg.batch_norm and device.type == "cuda":  # batch statistics over the global batch
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            state.model = model
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    use_compile = resolve_compile(cfg.compile, device)
    net = compiled(net, use_compile)  # validation and checkpoints use the eager ``model``: same parameters
    n_params = sum(p.numel() for p in model.parameters())
    log.info(f"run {run_dir}: {len(train_idx)} training / {len(val_idx)} held-out images (fold {cfg.fold}), "
             f"tiles {in_tile}->{out_tile}, U-Net width {cfg.base_width} depth {cfg.depth} "
             f"({n_params / 1e6:.1f} M parameters)")
    split = f" over {info.world} processes, {share} each," if info.enabled else ""
    log.info(f"device {device}, precision {precision}, {threads} threads{' per process' if info.enabled else ''}, "
             f"batch {cfg.batch_size}{split} as {share // micro} micro-batch(es) of {micro}"
             + (", compiled (the first step compiles)" if use_compile else ""))
    if state.step >= cfg.steps:
        log.info(f"nothing to do: the run is at step {state.step} of {cfg.steps}; raise --steps to train longer")

    batches = StepBatches(state.step, cfg.steps, cfg.batch_size, micro, info.rank, info.world)
    loader = DataLoader(TileDataset(sampler), batch_sampler=batches, num_workers=cfg.workers,
                        pin_memory=device.type == "cuda", persistent_workers=False)
    per_step = share // micro
    fault_rank, fault_step = int(os.environ.get(FAULT_RANK, -1)), int(os.environ.get(FAULT_STEP, -1))
    started = time.perf_counter()
    first_step = state.step
    model.train()
    restore_sigterm = _sigterm_as_interrupt()
    try:
        it = iter(loader)
        while state.step < cfg.steps:
            t0 = time.perf_counter()
            micro_batches = [next(it) for _ in range(per_step)]
            lr = lr_at(cfg, state.step + 1)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with _deferred_interrupt():  # the step, its count and its log line: all or nothing
                try:
                    loss = train_step(net, optimizer, state.scaler, micro_batches, device, precision,
                                      state.step + 1, info, cfg.dice_loss_weight)
                except Exception as exc:
                    if use_compile and is_compile_error(exc):  # checkpoints already written stay intact
                        raise compile_failed(exc) from exc
                    raise
                state.step += 1
                log.step(state.step, loss, cfg.batch_size, time.perf_counter() - t0, lr)
            last = state.step == cfg.steps
            due = (cfg.val_every and state.step % cfg.val_every == 0) or last
            if cfg.validation and val_idx and due and (validate_at_end or not last):
                if info.is_main:  # one process scores the held-out images; the others wait
                    validate(state, cfg, data, val_idx, device, precision, run_dir, log)
                distributed.barrier(info)
            if state.step % cfg.checkpoint_every == 0 or last:
                if info.is_main:
                    _save(run_dir, cfg, state, full=True, rotated=True)
                distributed.barrier(info)
            if info.rank == fault_rank and state.step == fault_step:
                os.kill(os.getpid(), signal.SIGKILL)
    except KeyboardInterrupt:
        log.close()
        if state.step > first_step and info.is_main:
            _save(run_dir, cfg, state, full=True, rotated=False)
            plot_loss(run_dir)
        print(f"interrupted at step {state.step}; continue with: biounet train --resume {run_dir}",
              file=sys.stderr)
        raise
    finally:
        log.close()
        restore_sigterm()
    if not info.is_main:
        return {"run_dir": str(run_dir), "step": state.step, "rank": info.rank}
    wall = time.perf_counter() - started
    plot_loss(run_dir)
    steps_done = state.step - first_step
    summary = {
        "run_dir": str(run_dir), "step": state.step, "steps_this_session": steps_done,
        "final_loss": log.losses[-1] if log.losses else None,
        "first_loss": log.losses[0] if log.losses else None,  # of this session
        "images_per_s_median": float(np.median(log.rates)) if log.rates else None,
        "wall_s": wall, "device": str(device), "precision": precision, "threads": threads,
        "micro_batch_size": micro, "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    if steps_done:
        log.info(f"done: step {state.step}, loss {summary['final_loss']:.4f}, median {summary['images_per_s_median']:.2f} "
                 f"images/s, {_hms(wall)} wall, peak memory {summary['peak_rss_gib']:.2f} GiB; "
                 f"checkpoints, metrics.jsonl and loss.png in {run_dir}")
    return summary
