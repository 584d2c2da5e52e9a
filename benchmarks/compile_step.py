"""Training-step time of a config's network, eager against torch.compile, in one run.

    python benchmarks/compile_step.py configs/isbi-cpu.yaml [--steps 6] [--json FILE]

Random tiles of the config's size and batch; each mode runs in a fresh process. The first step
of the compiled mode includes compiling (Inductor's on-disk caches are switched off, so it is
the cost a new machine pays); the medians leave out that first step.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import statistics
import time


def _time_steps(config: str, compile_: bool, steps: int) -> dict:
    if compile_:
        os.environ["TORCHINDUCTOR_FORCE_DISABLE_CACHES"] = "1"
    import torch

    from biounet.config import from_dict, load_yaml
    from biounet.device import compiled, grad_scaler, resolve_device, resolve_precision
    from biounet.engine import build_model, make_optimizer, tile_geometry, train_step

    cfg = from_dict({**load_yaml(config), "compile": compile_}).validate()
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    in_t, out_t = tile_geometry(cfg)
    gen = torch.Generator().manual_seed(0)
    batch = [(torch.rand(cfg.batch_size, cfg.in_channels, in_t, in_t, generator=gen) * 2 - 1,
              torch.randint(0, cfg.classes, (cfg.batch_size, out_t, out_t), generator=gen),
              torch.ones(cfg.batch_size, out_t, out_t))]
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
    return {"first_step_s": times[0], "median_step_s": statistics.median(times[1:]), "steps_s": times[1:],
            "device": str(device), "precision": precision, "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", help="a YAML config (its network, tile size and batch are timed)")
    ap.add_argument("--steps", type=int, default=6, help="timed steps after the first (default: 6)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    args = ap.parse_args()
    ctx = multiprocessing.get_context("spawn")
    result = {}
    for mode, flag in (("eager", False), ("compiled", True)):
        with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            result[mode] = pool.submit(_time_steps, args.config, flag, args.steps).result()
    result["speedup"] = result["eager"]["median_step_s"] / result["compiled"]["median_step_s"]
    for mode in ("eager", "compiled"):
        r = result[mode]
        print(f"{mode:9s} first step {r['first_step_s']:6.1f} s, median step {r['median_step_s']:.3f} s "
              f"({r['device']}, {r['precision']}, {r['threads']} threads)")
    print(f"torch.compile speed-up per step: {result['speedup']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
