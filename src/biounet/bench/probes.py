"""The probes of ``biounet bench``: each one runs in a fresh process of its own (bench.py starts
them and builds the table) and returns its figures as a dict.

A probe takes a ``spec``, a plain dict of :class:`biounet.bench.runner.BenchConfig`'s fields plus the
probe's own settings (``micro``, ``accum``, ``baseline``, ``compile``, ``slice_tile``).
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from functools import partial
from types import ModuleType
from typing import Any

import numpy as np

from biounet.core.config import TrainConfig

GIB = 2**30


def _setup(spec: dict) -> tuple[Any, Any]:
    import torch

    from biounet.core.device import resolve_device, set_threads, tune_for_fixed_shapes

    set_threads(spec["threads"])
    device = resolve_device(spec["device"])
    tune_for_fixed_shapes(device)
    return torch, device


def _sync(torch, device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peaks(torch, device) -> dict[str, float]:
    out = {"peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB}
    if device.type == "cuda":
        out["cuda_peak_gib"] = torch.cuda.max_memory_allocated(device) / GIB
    return out


def _timed(fn: Callable[[], Any], torch, device, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    _sync(torch, device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(torch, device)
        times.append(time.perf_counter() - t0)
    return times


def train_config(spec: dict) -> TrainConfig:
    """The training configuration a probe measures: ``biounet train``'s, with the spec's network and batch."""
    return TrainConfig(
        base_width=spec["base_width"],
        depth=spec["depth"],
        tile_size=spec["tile_size"],
        batch_size=spec["batch_size"],
        precision=spec["precision"],
        device=spec["device"],
    )


def probe_matmul(spec: dict) -> dict:
    """Matrix-product rate in TFLOP/s for bf16 and fp32.

    The side grows from 256 until one product takes 50 ms (or reaches 8192 on a GPU, 4096 on a
    CPU), so a slow emulated bf16 is measured as quickly as a fast one.
    """
    torch, device = _setup(spec)
    largest = 8192 if device.type == "cuda" else 4096
    out = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        n = 256
        while True:
            a = torch.randn(n, n, device=device).to(dtype)
            b = torch.randn(n, n, device=device).to(dtype)
            once = min(_timed(partial(torch.mm, a, b), torch, device, 1, 2))
            if once >= 0.05 or n >= largest:
                break
            n *= 2
        times = _timed(partial(torch.mm, a, b), torch, device, 1, max(spec["repeats"], 5))
        out[f"matmul_{name}_tflops"] = 2 * n**3 / statistics.median(times) / 1e12
        out[f"matmul_{name}_n"] = n
    return out


def probe_flops(spec: dict) -> dict:
    """GFLOP per image, forward and forward+backward, counted on the meta device."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from biounet.train.memory import meta_model

    cfg = train_config(spec)
    model = meta_model(cfg)
    out = {}
    for side, key in ((cfg.tile_size, "tile"), (spec["slice_tile"], "slice_tile")):
        x = torch.empty(1, cfg.in_channels, side, side, device="meta")
        with FlopCounterMode(display=False) as fwd:
            model(x)
        out[f"gflop_infer_{key}"] = fwd.get_total_flops() / 1e9
        if key == "tile":
            with FlopCounterMode(display=False) as both:
                model(x).float().sum().backward()
            out["gflop_train_tile"] = both.get_total_flops() / 1e9
    return out


def synthetic_batches(
    torch: ModuleType, cfg: TrainConfig, micro: int, count: int, in_channels: int = 1
) -> list[tuple[Any, ...]]:
    from biounet.model.unet import tile_geometry

    in_t, out_t = tile_geometry(cfg)
    gen = torch.Generator().manual_seed(0)
    return [
        (
            torch.rand(micro, in_channels, in_t, in_t, generator=gen) * 2 - 1,
            torch.randint(0, cfg.classes, (micro, out_t, out_t), generator=gen),
            torch.ones(micro, out_t, out_t),
        )
        for _ in range(count)
    ]


def probe_train(spec: dict) -> dict:
    """Images/s of optimizer steps of ``micro * accum`` images on biounet's default path
    (``engine.train_step``) or, with ``baseline``, a plain fp32 NCHW eager loop."""
    torch, device = _setup(spec)
    import torch.nn.functional as F

    from biounet.core.device import compiled, memory_format, resolve_compile, resolve_precision
    from biounet.model.unet import build_model
    from biounet.train.engine import train_step
    from biounet.train.memory import choose_micro_batch
    from biounet.train.optim import make_optimizer

    cfg = train_config(spec)
    if spec["baseline"]:
        precision, micro = "fp32", spec["micro"] or 1
        model = build_model(cfg).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        precision = resolve_precision(cfg.precision, device)
        micro = spec["micro"] or choose_micro_batch(cfg, cfg.batch_size, device, precision)
        model = build_model(cfg).to(device).to(memory_format=memory_format(device, precision))  # type: ignore[call-overload]  # Module.to takes memory_format; torch's overloads omit it
        optimizer = make_optimizer(model, cfg, device)
    net = compiled(model, resolve_compile(spec["compile"], device) and not spec["baseline"])
    accum = spec["accum"] or cfg.batch_size // micro
    batches = synthetic_batches(torch, cfg, micro, accum, cfg.in_channels)
    model.train()
    if spec["baseline"]:

        def step():
            optimizer.zero_grad(set_to_none=True)
            for x, y, _ in batches:
                x, y = x.to(device), y.to(device)
                F.cross_entropy(model(x), y).div(accum).backward()
            optimizer.step()
    else:
        from biounet.core.device import grad_scaler

        scaler = grad_scaler(device, precision)

        def step():
            train_step(net, optimizer, scaler, batches, device, precision, 1)

    times = _timed(step, torch, device, spec["warmup"], spec["repeats"])
    return {
        "images_per_s": micro * accum / statistics.median(times),
        "step_s": times,
        "micro": micro,
        "accum": accum,
        "precision": precision,
        **_peaks(torch, device),
    }


def probe_infer(spec: dict) -> dict:
    """Images/s on tiles (default path: inference mode, autocast, tile batches; baseline: fp32
    NCHW, one tile at a time, no_grad) and, for the default path, seconds per 512x512 slice."""
    torch, device = _setup(spec)

    from biounet.core.device import resolve_compile, resolve_precision
    from biounet.model.unet import build_model
    from biounet.segment.inference import segment, torch_predictor

    cfg = train_config(spec)
    model = build_model(cfg).eval()
    side = cfg.tile_size
    if spec["baseline"]:
        model = model.to(device)
        batch = 1
        x = torch.rand(batch, cfg.in_channels, side, side) * 2 - 1

        def run():
            with torch.no_grad():
                return model(x.to(device)).cpu()

        times = _timed(run, torch, device, spec["warmup"], spec["repeats"])
        return {"images_per_s": batch / statistics.median(times), "precision": "fp32", "batch": batch}
    precision = resolve_precision(cfg.precision, device)
    predict = torch_predictor(model, device, precision, compile=resolve_compile(spec["compile"], device))
    batch = spec["infer_batch"]
    tiles = np.random.default_rng(0).random((batch, cfg.in_channels, side, side), dtype=np.float32) * 2 - 1
    times = _timed(lambda: predict(tiles), torch, device, spec["warmup"], spec["repeats"])
    image = np.random.default_rng(1).random((cfg.in_channels, 512, 512), dtype=np.float32) * 2 - 1
    slice_times = _timed(
        lambda: segment(image, predict, cfg.depth, cfg.padding, batch_size=batch),
        torch,
        device,
        spec["warmup"],
        spec["repeats"],
    )
    return {
        "images_per_s": batch / statistics.median(times),
        "precision": precision,
        "batch": batch,
        "slice512_s": statistics.median(slice_times),
    }


def probe_augment(spec: dict) -> dict:
    """Seconds to draw one batch of augmented training tiles (elastic, flips, intensity) in one
    process, on synthetic EM-like 512x512 slices."""
    torch, device = _setup(spec)
    from biounet.data import AugmentConfig, SegmentationData, TileSampler, synthetic_em_image
    from biounet.data.readers import mask_to_classes, scale_image
    from biounet.model.unet import tile_geometry

    cfg = train_config(spec)
    rng = np.random.default_rng(0)
    pairs = [synthetic_em_image(rng, 512) for _ in range(4)]
    data = SegmentationData(
        [scale_image(im, 1) for im, _ in pairs],
        [mask_to_classes(lb, 2, None) for _, lb in pairs],
        [f"s{i}" for i in range(4)],
    )
    in_t, out_t = tile_geometry(cfg)
    sampler = TileSampler(data, list(range(4)), in_t, out_t, AugmentConfig(), 0)
    counter = iter(range(10**9))

    def batch():
        for _ in range(cfg.batch_size):
            sampler(next(counter))

    times = _timed(batch, torch, device, spec["warmup"], spec["repeats"])
    return {"batch_s": statistics.median(times)}
