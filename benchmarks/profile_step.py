"""Where the time of one training step goes: PyTorch's profiler over one forward+backward+Adam
step of the default network on the default path, ops grouped by name.

    python benchmarks/profile_step.py [--base-width 64] [--tile-size 572] [--micro 1] [--device cpu]

Prints each op's share of the step's time, and the convolutions' share with their achieved
TFLOP/s (the step's FLOPs counted by PyTorch's FLOP counter, nearly all of them convolutions).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from biounet.bench.probes import synthetic_batches
from biounet.core.config import TrainConfig
from biounet.core.device import grad_scaler, memory_format, resolve_device, resolve_precision
from biounet.model.unet import build_model, tile_geometry
from biounet.train.engine import train_step
from biounet.train.optim import make_optimizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-width", type=int, default=64)
    ap.add_argument("--tile-size", type=int, default=572)
    ap.add_argument("--micro", type=int, default=1, help="tiles per step (default: 1)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--top", type=int, default=12, help="ops to list (default: 12)")
    args = ap.parse_args()
    cfg = TrainConfig(base_width=args.base_width, tile_size=args.tile_size, batch_size=args.micro, device=args.device)
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    in_t = tile_geometry(cfg)[0]
    batch = synthetic_batches(torch, cfg, args.micro, 1, cfg.in_channels)
    model = build_model(cfg).to(device).to(memory_format=memory_format(device, precision))
    optimizer, scaler = make_optimizer(model, cfg, device), grad_scaler(device, precision)
    train_step(model, optimizer, scaler, batch, device, precision, 1)  # warm-up
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    t0 = time.perf_counter()
    with profile(activities=activities) as prof:
        train_step(model, optimizer, scaler, batch, device, precision, 2)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    wall = time.perf_counter() - t0
    attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    rows = sorted(prof.key_averages(), key=lambda e: getattr(e, attr), reverse=True)
    total = sum(getattr(e, attr) for e in rows) / 1e6
    with FlopCounterMode(display=False) as counter:
        train_step(model, optimizer, scaler, batch, device, precision, 3)
    gflop = counter.get_total_flops() / 1e9
    conv = sum(getattr(e, attr) for e in rows if "conv" in e.key) / 1e6
    print(
        f"one step of {args.micro} tile(s) {in_t}x{in_t}, width {cfg.base_width}, {device}, {precision}: "
        f"{wall:.2f} s wall, {total:.2f} s of profiled op time, {gflop:.0f} GFLOP counted"
    )
    print(
        f"convolutions (forward and backward): {conv:.2f} s = {100 * conv / total:.1f} % of the op time, "
        f"{gflop / conv / 1e3:.3f} TFLOP/s while they run; everything else: {total - conv:.2f} s"
    )
    print("| op | calls | self s | share |\n|---|---|---|---|")
    for e in rows[: args.top]:
        t = getattr(e, attr) / 1e6
        print(f"| {e.key} | {e.count} | {t:.3f} | {100 * t / total:.1f} % |")


if __name__ == "__main__":
    main()
