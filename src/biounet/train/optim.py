"""The optimizer and the learning-rate schedule (a pure function of the step: nothing to save)."""

from __future__ import annotations

import math

import torch

from biounet.core.config import TrainConfig


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Adam:
    """Adam with L2 weight decay, as the reference; the fused kernel (one pass over all
    parameters) on CUDA and CPU, where this PyTorch has it."""
    try:
        return torch.optim.Adam(
            model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=device.type in ("cuda", "cpu")
        )
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
