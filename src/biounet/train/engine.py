"""The training engine: plain functions, no callback framework, read top to bottom.

``train(cfg)`` builds everything from one resolved :class:`TrainConfig`, runs ``train_step``
per optimizer step and writes the run folder: ``config.yaml``, ``metrics.jsonl`` (runlog.py),
checkpoints (``last.pt`` with the full state, rotated ``step_*.pt`` weights; checkpoint.py) and
``loss.png``. The pieces live beside: the run's setup (runsetup.py), validation and ``best.pt``
(validation.py), the network (model.py), the losses (losses.py), the
micro-batch plan (memory.py), the optimizer and schedule (optim.py), stopping on Ctrl-C or SIGTERM
(stopping.py), and what a caller in the same process hears and asks (hooks.py: the napari Fine-tune widget).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch.utils.data import DataLoader

from biounet.core.config import TrainConfig, to_yaml
from biounet.core.device import (
    autocast,
    compile_failed,
    grad_scaler,
    is_compile_error,
    memory_format,
    resolve_compile,
    resolve_precision,
    tune_for_fixed_shapes,
)
from biounet.core.errors import ConfigError, TrainingDiverged
from biounet.data import TileDataset, TileSampler
from biounet.data.readers import SegmentationData, image_digest
from biounet.io.fileio import atomic_write_text
from biounet.model.checkpoint import LAST, RunState, adopt_network, resume_config, save_run
from biounet.model.unet import build_model, tile_geometry
from biounet.train import distributed
from biounet.train.distributed import DistInfo
from biounet.train.hooks import TrainHooks
from biounet.train.losses import AffinityLoss, batch_counts, loss_options, micro_batch_loss
from biounet.train.memory import choose_micro_batch
from biounet.train.optim import lr_at, make_optimizer
from biounet.train.runlog import Logger, describe_run, plot_loss, write_summary
from biounet.train.runsetup import (
    check_new_run_dir,
    run_dir_for,
    start_state,
    train_threads,
    training_data,
    training_net,
)
from biounet.train.stopping import deferred_interrupt, sigterm_as_interrupt
from biounet.train.validation import validate

if TYPE_CHECKING:
    from torch.nn.parallel import DistributedDataParallel

# Fault injection for tests of a dying rank: rank R kills itself right after the checkpoint of step K.
FAULT_RANK, FAULT_STEP = "BIOUNET_FAULT_KILL_RANK", "BIOUNET_FAULT_KILL_AFTER_STEP"


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


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    micro_batches: list[tuple[torch.Tensor, ...]],
    device: torch.device,
    precision: str,
    step: int,
    dist_info: DistInfo = DistInfo(),
    dice_weight: float = 0.0,
    affinity: AffinityLoss = AffinityLoss(),
) -> float:
    """One optimizer step over a global batch given as micro-batches of (images, masks, weights[, affinity
    targets, validity]); returns its loss (losses.micro_batch_loss: the mean pixel cross-entropy, plus the
    weighted dice term when ``dice_weight`` is set, plus the affinity terms when the batch has targets).

    Each micro-batch's loss sums are divided by the counts of the whole global batch (summed over all
    processes), so the accumulated gradient is the same whatever the micro-batch split or the number of
    processes. DistributedDataParallel averages gradients over the processes, so each process's loss is
    scaled by the world size to turn that average into the sum.
    """
    counts = batch_counts(micro_batches, dist_info, device)
    if counts.pixels == 0:
        raise TrainingDiverged(f"step {step}: every pixel of the batch is ignored; check --ignore-value")
    optimizer.zero_grad(set_to_none=True)
    total = torch.zeros((), device=device)
    for k, (images, *rest) in enumerate(micro_batches):
        images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format(device, precision))
        rest = [t.to(device, non_blocking=True) for t in rest]
        # gradients are exchanged once per step, at the last micro-batch (nanoGPT's habit)
        sync = not dist_info.enabled or k == len(micro_batches) - 1
        # only a DistributedDataParallel model has no_sync, and only one is asked (sync is False under DDP)
        with contextlib.nullcontext() if sync else cast("DistributedDataParallel", model).no_sync():
            with autocast(device, precision):
                logits = model(images)
            loss = micro_batch_loss(logits, rest, counts, dice_weight, affinity)
            scaler.scale(loss * dist_info.world).backward()
        total += loss.detach()
    value = distributed.all_sum(float(total), dist_info, device)
    if not math.isfinite(value):
        raise TrainingDiverged(
            f"the loss is {value} at step {step}: training diverged. Checkpoints already "
            f"written are intact; lower --lr, or try --precision fp32"
        )
    scaler.step(optimizer)
    scaler.update()
    return value


def init_network(cfg: TrainConfig, explicit: dict[str, Any], quiet: bool = False) -> TrainConfig:
    """``cfg`` with its ``--init-from`` model's network where the user (``explicit``) set none, said in one
    line (once under torchrun) unless ``quiet``."""
    cfg, taken = adopt_network(cfg, explicit)
    if taken and not quiet and os.environ.get("RANK", "0") == "0":
        said = ", ".join(f"{k} {v}" for k, v in taken.items())
        print(f"biounet: the network of --init-from {cfg.init_from}: {said} (set them to differ)", flush=True)
    return cfg


def train(
    cfg: TrainConfig,
    explicit: dict[str, Any] | None = None,
    data: SegmentationData | None = None,
    quiet: bool = False,
    validate_at_end: bool = True,
    hooks: TrainHooks | None = None,
) -> dict[str, Any]:
    """Train a U-Net as ``cfg`` says; returns a summary (also written to summary.json).

    ``explicit`` names the options the user set: a resumed run may change only some, and ``--init-from``
    brings the base model's network where the user set none (:func:`init_network`; ``explicit`` None, as
    the napari widget passes its complete configuration: nothing brought). ``data`` may pass a dataset
    already in memory instead of reading ``cfg.data``. ``validate_at_end=False`` skips the
    validation of the final step (``biounet cv`` scores the final weights itself). ``hooks``
    (hooks.py) hear every step and checkpoint and may stop the run: the summary then says
    ``"stopped": True`` at its ``"step"``, last.pt saved there (resumable).
    """
    ckpt = None
    if cfg.resume:
        cfg, ckpt = resume_config(cfg, explicit or {})
    elif explicit is not None:
        cfg = init_network(cfg, explicit, quiet)
    cfg.validate()
    info, device = distributed.setup(cfg.device, cfg.dist_timeout)
    try:
        summary = _train(cfg, ckpt, info, device, data, quiet, validate_at_end, hooks)
    except BaseException:
        distributed.teardown(info)
        raise
    distributed.teardown(info, finished=True)
    return summary


def _train(
    cfg: TrainConfig,
    ckpt: dict[str, Any] | None,
    info: DistInfo,
    device: torch.device,
    data: SegmentationData | None,
    quiet: bool,
    validate_at_end: bool,
    hooks: TrainHooks | None,
) -> dict[str, Any]:
    run_dir = run_dir_for(cfg)
    if ckpt is None:
        check_new_run_dir(run_dir)  # before any work: a folder that cannot take the run fails at once
    precision = resolve_precision(cfg.precision, device)
    tune_for_fixed_shapes(device)
    threads = train_threads(cfg, info, device)
    if cfg.batch_size % info.world:
        raise ConfigError(
            f"--batch-size {cfg.batch_size} does not divide over {info.world} processes; use a multiple of {info.world}"
        )
    share = cfg.batch_size // info.world
    in_tile, out_tile = tile_geometry(cfg)
    data, train_idx, val_idx, sampler = training_data(cfg, data, in_tile, out_tile)
    if cfg.micro_batch_size and share % cfg.micro_batch_size:
        # e.g. resumed with another world size: the recorded micro-batch no longer divides the share
        cfg = cfg.replace(micro_batch_size=0)
    micro = distributed.broadcast(choose_micro_batch(cfg, share, device, precision), info)
    cfg = cfg.replace(micro_batch_size=micro)
    distributed.barrier(info)  # every rank has looked before rank 0 writes anything
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)

    state = _fresh_state(cfg, device, precision, tuple(image_digest(data.images[i]) for i in train_idx))
    log = Logger(run_dir, cfg, ckpt["step"] if ckpt else 0, quiet or not info.is_main, write=info.is_main)
    start_state(cfg, ckpt, state, run_dir, log)
    if info.is_main:
        atomic_write_text(run_dir / "config.yaml", to_yaml(cfg))
    # every rank starts from the same weights: built from the same seed, or loaded from the same file
    use_compile = resolve_compile(cfg.compile, device)
    net = training_net(state, cfg, info, device, use_compile)
    sizes = (len(train_idx), len(val_idx), in_tile, out_tile)
    describe_run(log, run_dir, cfg, state, info, device, precision, threads, use_compile, sizes)
    if state.step >= cfg.steps:
        log.info(f"nothing to do: the run is at step {state.step} of {cfg.steps}; raise --steps to train longer")

    loader = _loader(sampler, state.step, cfg, micro, info, device)
    first_step = state.step
    started = time.perf_counter()

    def validation() -> None:
        validate(state, cfg, data, val_idx, device, precision, run_dir, log)

    check = validation if cfg.validation and val_idx else None
    stopped = _loop(
        state, net, loader, cfg, device, precision, info, run_dir, log, use_compile, check, validate_at_end, hooks
    )
    if not info.is_main:
        return {"run_dir": str(run_dir), "step": state.step, "rank": info.rank, "stopped": stopped}
    wall = time.perf_counter() - started
    return write_summary(state, log, run_dir, first_step, wall, device, precision, threads, micro, stopped)


def _fresh_state(cfg: TrainConfig, device: torch.device, precision: str, digests: tuple[str, ...]) -> RunState:
    """A new network in the device's memory layout, its optimizer and gradient scaler; ``digests``: the
    training images' fingerprints (``start_state`` then loads a resumed run or --init-from weights)."""
    model = build_model(cfg).to(device).to(memory_format=memory_format(device, precision))  # type: ignore[call-overload]  # Module.to takes memory_format; torch's overloads omit it
    return RunState(model, make_optimizer(model, cfg, device), grad_scaler(device, precision), train_digests=digests)


def _loader(
    sampler: TileSampler, first_step: int, cfg: TrainConfig, micro: int, info: DistInfo, device: torch.device
) -> DataLoader[Any]:
    """This process's micro-batches of tiles from ``first_step`` to ``cfg.steps``."""
    batches = StepBatches(first_step, cfg.steps, cfg.batch_size, micro, info.rank, info.world)
    # TileDataset is a map-style dataset (__getitem__, __len__) without subclassing torch's Dataset, which
    # DataLoader accepts; its annotation asks for a Dataset subclass
    return DataLoader(
        TileDataset(sampler),  # type: ignore[arg-type]
        batch_sampler=batches,
        num_workers=cfg.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )


def _loop(
    state: RunState,
    net: torch.nn.Module,
    loader: DataLoader,
    cfg: TrainConfig,
    device: torch.device,
    precision: str,
    info: DistInfo,
    run_dir: Path,
    log: Logger,
    use_compile: bool,
    validation: Callable[[], None] | None,
    validate_at_end: bool,
    hooks: TrainHooks | None,
) -> bool:
    """Step until ``cfg.steps``: validate and checkpoint when due; on Ctrl-C or SIGTERM save last.pt and
    raise, on the hooks' request save it and return True (stopped early)."""
    per_step = cfg.batch_size // info.world // cfg.micro_batch_size  # micro-batches per step
    fault_rank, fault_step = int(os.environ.get(FAULT_RANK, -1)), int(os.environ.get(FAULT_STEP, -1))
    first_step = state.step
    state.model.train()
    restore_sigterm = sigterm_as_interrupt()
    try:
        it = iter(loader)
        while state.step < cfg.steps:
            t0 = time.perf_counter()
            micro_batches = [next(it) for _ in range(per_step)]
            loss = _step(state, net, micro_batches, t0, cfg, device, precision, info, log, use_compile)
            saved = _validate_and_save(state, cfg, info, run_dir, validation, validate_at_end)
            if info.rank == fault_rank and state.step == fault_step:
                os.kill(os.getpid(), signal.SIGKILL)
            if hooks is not None and _heard(hooks, state, cfg, info, run_dir, loss, saved):
                return True
    except KeyboardInterrupt:
        log.close()
        if state.step > first_step and info.is_main:
            save_run(run_dir, cfg, state, full=True, rotated=False)
            plot_loss(run_dir)
        print(f"interrupted at step {state.step}; continue with: biounet train --resume {run_dir}", file=sys.stderr)
        raise
    finally:
        log.close()
        restore_sigterm()
    return False


def _step(
    state: RunState,
    net: torch.nn.Module,
    micro_batches: list[tuple[torch.Tensor, ...]],
    t0: float,
    cfg: TrainConfig,
    device: torch.device,
    precision: str,
    info: DistInfo,
    log: Logger,
    use_compile: bool,
) -> float:
    """One step at the scheduled learning rate (``t0``: when its micro-batches began to be drawn); the
    step, its count and its log line happen all or not at all (Ctrl-C waits for them). Returns its loss."""
    lr = lr_at(cfg, state.step + 1)
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    with deferred_interrupt():
        try:
            loss = train_step(
                net,
                state.optimizer,
                state.scaler,
                micro_batches,
                device,
                precision,
                state.step + 1,
                info,
                **loss_options(cfg),
            )
        except Exception as exc:
            if use_compile and is_compile_error(exc):  # checkpoints already written stay intact
                raise compile_failed(exc) from exc
            raise
        state.step += 1
        log.step(state.step, loss, cfg.batch_size, time.perf_counter() - t0, lr)
    return loss


def _heard(
    hooks: TrainHooks, state: RunState, cfg: TrainConfig, info: DistInfo, run_dir: Path, loss: float, saved: bool
) -> bool:
    """Tell the hooks of the step (and of last.pt when it was just saved) and ask whether to stop; on a stop
    before the last step, save last.pt (unless just saved) and return True. Rank 0 asks; every rank hears."""
    if info.is_main:
        hooks.on_step(state.step, cfg.steps, loss)
        if saved:
            hooks.on_checkpoint(run_dir / LAST)
    stop = distributed.broadcast(info.is_main and bool(hooks.should_stop()), info)
    if not stop or state.step >= cfg.steps:  # the last step ends the run anyway: not stopped early
        return False
    if info.is_main and not saved:
        save_run(run_dir, cfg, state, full=True, rotated=False)
        hooks.on_checkpoint(run_dir / LAST)
    distributed.barrier(info)
    return True


def _validate_and_save(
    state: RunState,
    cfg: TrainConfig,
    info: DistInfo,
    run_dir: Path,
    validation: Callable[[], None] | None,
    validate_at_end: bool,
) -> bool:
    """After a step: validate, then checkpoint, when due (the last step is), the other ranks waiting;
    returns whether last.pt was saved."""
    last = state.step == cfg.steps
    due = (cfg.val_every and state.step % cfg.val_every == 0) or last
    if validation is not None and due and (validate_at_end or not last):
        if info.is_main:  # one process scores the held-out images; the others wait
            validation()
        distributed.barrier(info)
    if state.step % cfg.checkpoint_every == 0 or last:
        if info.is_main:
            save_run(run_dir, cfg, state, full=True, rotated=True)
        distributed.barrier(info)
        return True
    return False
