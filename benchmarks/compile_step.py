"""Training-step time of a config's network, eager against torch.compile, in one run.

    python benchmarks/compile_step.py configs/isbi-cpu.yaml [--steps 6] [--json FILE]

Random tiles of the config's size and batch; each mode runs in a fresh process. The first step
of the compiled mode includes compiling (Inductor's on-disk caches are switched off, so it is
the cost a new machine pays); the medians leave out that first step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from biounet.bench.runner import in_fresh_process


def _time_steps(spec: dict) -> dict:
    config, compile_, steps = spec["config"], spec["compile"], spec["steps"]
    if compile_:
        os.environ["TORCHINDUCTOR_FORCE_DISABLE_CACHES"] = "1"
    import torch

    from biounet.bench.probes import synthetic_batches
    from biounet.core.config import from_dict, load_yaml
    from biounet.core.device import compiled, grad_scaler, resolve_device, resolve_precision
    from biounet.model.unet import build_model
    from biounet.train.engine import train_step
    from biounet.train.optim import make_optimizer

    cfg = from_dict({**load_yaml(config), "compile": compile_}).validate()
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    batch = synthetic_batches(torch, cfg, cfg.batch_size, 1, cfg.in_channels)
    model = build_model(cfg).to(device)
    optimizer = make_optimizer(model, cfg, device)
    net, scaler = compiled(model, compile_), grad_scaler(device, precision)
    times = []
    for step in range(steps + 1):
        t0 = time.perf_counter()
        train_step(net, optimizer, scaler, batch, device, precision, step + 1)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return {
        "first_step_s": times[0],
        "median_step_s": statistics.median(times[1:]),
        "steps_s": times[1:],
        "device": str(device),
        "precision": precision,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", help="a YAML config (its network, tile size and batch are timed)")
    ap.add_argument("--steps", type=int, default=6, help="timed steps after the first (default: 6)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    args = ap.parse_args()
    result = {
        mode: in_fresh_process(_time_steps, {"config": args.config, "compile": flag, "steps": args.steps})
        for mode, flag in (("eager", False), ("compiled", True))
    }
    result["speedup"] = result["eager"]["median_step_s"] / result["compiled"]["median_step_s"]
    for mode in ("eager", "compiled"):
        r = result[mode]
        print(
            f"{mode:9s} first step {r['first_step_s']:6.1f} s, median step {r['median_step_s']:.3f} s "
            f"({r['device']}, {r['precision']}, {r['threads']} threads)"
        )
    print(f"torch.compile speed-up per step: {result['speedup']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
