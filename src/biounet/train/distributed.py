"""Data-parallel training on PyTorch's own engine: torch.distributed + DistributedDataParallel.

Launched by ``torchrun``, which sets RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE. gloo on
CPU, NCCL on CUDA (one process per GPU); on CPU the cores are split between the processes of a
machine. Everything distributed lives here; the engine asks only for the rank, the world size
and sums across ranks.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

from biounet.core.device import resolve_device
from biounet.core.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job (a single process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup(device_name: str, timeout_s: float) -> tuple[DistInfo, torch.device]:
    """Join the process group when launched by torchrun; returns this process's place and device."""
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return DistInfo(), resolve_device(device_name)
    info = DistInfo(
        int(os.environ["RANK"]),
        int(os.environ["WORLD_SIZE"]),
        int(os.environ.get("LOCAL_RANK", 0)),
        int(os.environ.get("LOCAL_WORLD_SIZE", 1)),
    )
    device = resolve_device(device_name)
    if device.type == "cuda":
        if info.local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"local rank {info.local_rank} has no GPU: this machine has "
                f"{torch.cuda.device_count()}; start at most that many processes per node"
            )
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return info, device


def cpu_threads_per_process(info: DistInfo) -> int:
    """The machine's cores shared fairly between its processes (at least one each)."""
    return max(1, (os.cpu_count() or 1) // info.local_world)


def all_sum(value: float | int, info: DistInfo, device: torch.device) -> float:
    """Sum a number over all ranks (the number itself in a single process)."""
    if not info.enabled:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item())


def broadcast(value: T, info: DistInfo) -> T:
    """Rank 0's value on every rank."""
    if not info.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def teardown(info: DistInfo, finished: bool = False) -> None:
    """Leave the process group. ``finished``: every rank got here without an error, so they first
    wait for one another and drop the model's last references to the group (DistributedDataParallel
    holds it): a rank that destroyed its group while a peer was still writing, or whose gloo threads
    outlived the group into interpreter exit, could abort at exit ("terminate called without an
    active exception") after a run that had succeeded. After an error the group is destroyed at
    once: waiting for a peer that failed would only hang until the timeout."""
    if not (info.enabled and dist.is_initialized()):
        return
    if finished:
        gc.collect()
        dist.barrier()
    dist.destroy_process_group()
