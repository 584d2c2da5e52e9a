"""Memory planning: how many training samples fit in one forward/backward pass (the micro-batch).

Estimates run the network on the meta device (shapes only, no memory, no initialisation cost).
"""

from __future__ import annotations

import torch

from biounet.core.config import TrainConfig
from biounet.core.device import available_memory_bytes
from biounet.data.context import input_channels
from biounet.model.unet import UNet, build_model

# On the CPU a single 572x572 tile already keeps every core busy: at width 64 in float32 micro-
# batches of 1, 2 and 4 trained at 0.064, 0.061 and 0.059 images/s with 1.6, 2.4 and 4.1 GiB
# resident (README, Performance), so activations beyond this buy no speed, only memory.
CPU_ACTIVATION_CAP = 1 * 2**30


def meta_model(cfg: TrainConfig) -> UNet:
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
    model = meta_model(cfg)
    total = 0
    elem = 4 if precision == "fp32" else 2

    def hook(module: torch.nn.Module, inputs: object, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, torch.nn.ReLU) and module.inplace:
            return
        n = output.numel()
        total += n * (elem + 8 if isinstance(module, torch.nn.MaxPool2d) else elem)

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    with torch.no_grad():
        model(torch.empty(1, input_channels(cfg), cfg.tile_size, cfg.tile_size, device="meta"))
    for h in handles:
        h.remove()
    return int(total * 1.6)


def choose_micro_batch(cfg: TrainConfig, per_rank_batch: int, device: torch.device, precision: str) -> int:
    """The largest divisor of the batch whose activations fit the memory budget.

    The budget is ``cfg.memory_gib`` when set, else half the free memory; on the CPU the
    activations are also capped at ``CPU_ACTIVATION_CAP``.
    """
    if cfg.micro_batch_size:
        return cfg.micro_batch_size
    params = sum(p.numel() for p in meta_model(cfg).parameters())
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
