"""Setting up a training run: its folder, threads, data and tile sampler, the starting weights
(resumed or ``--init-from``) and the network the steps run (DDP, torch.compile). engine.py's
``train`` calls these in order.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from biounet.core.config import TrainConfig
from biounet.core.device import compiled, set_threads
from biounet.core.errors import ConfigError, DataError
from biounet.data import AugmentConfig, TileSampler, kfold_split, open_dataset
from biounet.data.affinities import offsets_for
from biounet.data.readers import SegmentationData
from biounet.data.volume_data import loss_weights
from biounet.io.fileio import check_output_dir
from biounet.model.checkpoint import LAST, RunState, load_init
from biounet.train import distributed
from biounet.train.distributed import DistInfo
from biounet.train.runlog import Logger


def run_dir_for(cfg: TrainConfig) -> Path:
    """The run folder: --out, else runs/<--name or the date and time>."""
    if cfg.out:
        return Path(cfg.out)
    name = cfg.name or datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / name


def check_new_run_dir(run_dir: Path) -> None:
    """Refuse to start a new run in a folder that holds one (its checkpoints would be overwritten), or
    in a path that is not a writable folder."""
    check_output_dir(run_dir, "--out")
    if (run_dir / LAST).exists():
        raise ConfigError(
            f"run folder {run_dir} already holds a run; continue it with --resume {run_dir} or choose another --out"
        )


def train_threads(cfg: TrainConfig, info: DistInfo, device: torch.device) -> int:
    """Set PyTorch's CPU threads (--threads, or each process's share of the cores under torchrun); returns them."""
    if info.enabled and device.type == "cpu" and not cfg.threads:
        return set_threads(distributed.cpu_threads_per_process(info))
    return set_threads(cfg.threads)


def training_data(
    cfg: TrainConfig, data: SegmentationData | None, in_tile: int, out_tile: int
) -> tuple[SegmentationData, list[int], list[int], TileSampler]:
    """The dataset, its training and held-out indices, and the sampler of training tiles."""
    if data is None:
        if not cfg.data:
            raise ConfigError(
                "--data is required: the ISBI 2012 folder, a folder with images/ and masks/, or an image volume "
                "with its label volume in --masks"
            )
        data = open_dataset(cfg.data, masks=cfg.masks, **cfg.mask_reading())
    if data.masks is None:
        raise DataError("training needs masks, but the dataset has none")
    train_idx, val_idx = kfold_split(len(data), cfg.fold, cfg.folds)
    # a lazy dataset's weight maps are made as its slices are drawn
    weights = loss_weights(data.masks, train_idx, cfg.classes, cfg.border_weight, cfg.border_sigma, cfg.class_balance)
    augment = AugmentConfig(
        cfg.flip, cfg.rotate90, cfg.elastic, cfg.elastic_sigma, cfg.elastic_grid, cfg.brightness, cfg.contrast
    )
    offsets = offsets_for(cfg.affinities)
    sampler = TileSampler(
        data, train_idx, in_tile, out_tile, augment, cfg.seed, weights, cfg.context, offsets, cfg.membrane_mode
    )
    return data, train_idx, val_idx, sampler


def start_state(cfg: TrainConfig, ckpt: dict[str, Any] | None, state: RunState, run_dir: Path, log: Logger) -> None:
    """Load the resumed checkpoint (or the --init-from weights) into ``state``."""
    if ckpt is not None:
        state.model.load_state_dict(ckpt["model"])
        state.optimizer.load_state_dict(ckpt["training_state"]["optimizer"])
        state.scaler.load_state_dict(ckpt["training_state"]["scaler"])
        torch.set_rng_state(ckpt["training_state"]["torch_rng"])
        state.step = ckpt["step"]
        state.best = ckpt["training_state"].get("best", -1.0)
        log.info(f"resuming {run_dir} at step {state.step}")
    elif cfg.init_from:
        skipped = load_init(state.model, cfg.init_from)
        log.info(
            f"initialised from {cfg.init_from}"
            + (f" (skipped {', '.join(skipped)}: its output channels differ)" if skipped else "")
        )


def training_net(
    state: RunState, cfg: TrainConfig, info: DistInfo, device: torch.device, use_compile: bool
) -> torch.nn.Module:
    """What the steps run: the model, wrapped in DDP when distributed, compiled when asked. Validation
    and checkpoints use the eager ``state.model``: the same parameters."""
    net: torch.nn.Module = state.model
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel

        if cfg.batch_norm and device.type == "cuda":  # batch statistics over the global batch
            state.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(state.model)
        net = DistributedDataParallel(state.model, device_ids=[device.index] if device.type == "cuda" else None)
    return compiled(net, use_compile)
