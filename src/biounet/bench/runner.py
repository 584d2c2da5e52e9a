"""``biounet bench``: how fast biounet trains and segments here, against this machine's own limits.

One run measures, each figure in a fresh process of its own (so that a peak resident memory is
the peak of that configuration alone, and no measurement warms another's caches):

- the machine's matrix-product peak in bf16 and fp32 (the ceiling every figure is compared to);
- GFLOP per image, counted with PyTorch's FLOP counter on the meta device (not assumed);
- training images/s of biounet's default path (the precision, memory layout, micro-batch and
  fused optimizer that ``biounet train`` picks here) and of a plain float32 eager baseline (NCHW,
  micro-batch 1, the textbook loop);
- inference images/s on 572x572 tiles (default path vs the same baseline) and the seconds to
  segment a whole 512x512 slice through the overlap-tile path (no TTA);
- the peak resident memory of one whole batch-16 training step on the default path, and
  images/s and peak memory for each micro-batch size of a sweep;
- the augmentation cost of a batch (elastic deformation included) against the training step.

Timings are medians of ``repeats`` timed runs after ``warmup`` untimed ones. The probes are in
``bench_probes.py``; this module runs them and builds the table.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from biounet.bench.probes import probe_augment, probe_flops, probe_infer, probe_matmul, probe_train, train_config
from biounet.core.errors import ConfigError


@dataclass
class BenchConfig:
    """What to benchmark; the network defaults are ``biounet train``'s."""

    device: str = "auto"
    base_width: int = 64
    depth: int = 4
    tile_size: int = 572
    batch_size: int = 16
    precision: str = "auto"
    threads: int = 0
    repeats: int = 3
    warmup: int = 1
    infer_batch: int = 4
    micro_sweep: list[int] = field(default_factory=list)
    baseline: bool = True
    memory: bool = True
    compile: bool | None = None  # None: as `biounet train` (on for CUDA)

    def validate(self) -> BenchConfig:
        for name in ("base_width", "depth", "tile_size", "batch_size", "repeats", "infer_batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ConfigError(f"--warmup must not be negative, got {self.warmup}")
        for m in self.micro_sweep:
            if m < 1 or self.batch_size % m:
                raise ConfigError(f"--micro-sweep {m}: each size must divide --batch-size {self.batch_size}")
        return self


def in_fresh_process(fn: Callable[[dict], dict], spec: dict) -> dict:
    """Run one probe in a new (spawned) interpreter, so its peak memory is its own."""
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(fn, spec).result()


# ---------------------------------------------------------------- the run


def run_bench(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every probe and return the figures (see the module docstring)."""
    import torch

    from biounet.core.device import resolve_compile, resolve_device, resolve_precision
    from biounet.model.unet import tile_geometry
    from biounet.segment.inference import plan_tiles

    cfg.validate()
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    use_compile = resolve_compile(cfg.compile, device)
    tile_geometry(train_config(asdict(cfg)))  # a clear error for a tile the network cannot take
    spec = {
        **asdict(cfg),
        "device": str(device),
        "micro": 0,
        "accum": 0,
        "baseline": False,
        "slice_tile": plan_tiles(512, 512, cfg.depth).in_tile[0],
        "compile": use_compile,
    }
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    r: dict[str, Any] = {
        "device": str(device),
        "device_name": name,
        "precision": precision,
        "torch": torch.__version__,
        "config": asdict(cfg),
        "compile": use_compile,
    }

    def probe(label: str, fn, **changes) -> dict:
        t0 = time.perf_counter()
        out = in_fresh_process(fn, {**spec, **changes})
        log(f"  {label}: {time.perf_counter() - t0:.0f} s")
        return out

    log(f"biounet bench on {name} ({device}), default precision {precision}")
    r.update(probe("matrix-product peaks", probe_matmul))
    peak = r[f"matmul_{'fp32' if precision == 'fp32' else 'bf16'}_tflops"]
    r["peak_tflops"] = peak
    r.update(probe("FLOP count", probe_flops))
    # timed optimizer steps of one micro-batch each: the per-image cost of a whole step without
    # its wait (the whole batch-16 step runs once below, for its memory)
    train = probe("training, default path", probe_train, accum=1)
    r.update(train_images_per_s=train["images_per_s"], train_micro=train["micro"], train_precision=train["precision"])
    infer = probe("inference, default path", probe_infer)
    r.update(infer_images_per_s=infer["images_per_s"], infer_batch=infer["batch"], slice512_s=infer["slice512_s"])
    r["train_tflops"] = r["train_images_per_s"] * r["gflop_train_tile"] / 1e3
    r["infer_tflops"] = r["infer_images_per_s"] * r["gflop_infer_tile"] / 1e3
    r["train_frac_of_peak"] = r["train_tflops"] / peak
    r["infer_frac_of_peak"] = r["infer_tflops"] / peak
    _comparisons(r, cfg, probe, use_compile)
    _memory(r, cfg, probe)
    return r


def _comparisons(r: dict[str, Any], cfg: BenchConfig, probe: Callable[..., dict], use_compile: bool) -> None:
    """The same default path eager (when compiled), the fp32 eager baseline, the augmentation cost."""
    if use_compile:  # what compiling buys: the same default path, eager, in the same run
        eager = probe("training, default path eager", probe_train, accum=1, compile=False)
        ieager = probe("inference, default path eager", probe_infer, compile=False)
        r.update(
            eager_train_images_per_s=eager["images_per_s"],
            eager_infer_images_per_s=ieager["images_per_s"],
            eager_slice512_s=ieager["slice512_s"],
        )
        r["compile_speedup_train"] = r["train_images_per_s"] / eager["images_per_s"]
        r["compile_speedup_infer"] = r["infer_images_per_s"] / ieager["images_per_s"]
    if cfg.baseline:
        base = probe("training, fp32 eager baseline", probe_train, baseline=True, micro=1, accum=1)
        ibase = probe("inference, fp32 eager baseline", probe_infer, baseline=True)
        r.update(baseline_train_images_per_s=base["images_per_s"], baseline_infer_images_per_s=ibase["images_per_s"])
        r["train_speedup_vs_fp32"] = r["train_images_per_s"] / base["images_per_s"]
        r["infer_speedup_vs_fp32"] = r["infer_images_per_s"] / ibase["images_per_s"]
    aug = probe("augmentation", probe_augment)
    r["augment_batch_s"] = aug["batch_s"]
    r["augment_frac_of_step"] = aug["batch_s"] / (cfg.batch_size / r["train_images_per_s"])


def _memory(r: dict[str, Any], cfg: BenchConfig, probe: Callable[..., dict]) -> None:
    """The peak memory of one whole training step, and the micro-batch sweep."""
    if cfg.memory:
        mem = probe(
            f"memory of one batch-{cfg.batch_size} step", probe_train, warmup=0, repeats=1, micro=r["train_micro"]
        )
        r["peak_rss_gib_batch16"] = mem["peak_rss_gib"]
        r["batch16_step_images_per_s"] = mem["images_per_s"]
        if "cuda_peak_gib" in mem:
            r["cuda_peak_gib_batch16"] = mem["cuda_peak_gib"]
    sweep = []
    for m in cfg.micro_sweep:
        out = probe(f"micro-batch {m}", probe_train, micro=m, accum=1)
        sweep.append(
            {
                "micro": m,
                "images_per_s": out["images_per_s"],
                "peak_rss_gib": out["peak_rss_gib"],
                **({"cuda_peak_gib": out["cuda_peak_gib"]} if "cuda_peak_gib" in out else {}),
            }
        )
    r["micro_sweep"] = sweep


Row = tuple[str, str]


def format_table(r: dict[str, Any]) -> str:
    """The figures as a Markdown table (what ``biounet bench`` prints)."""
    rows = _speed_rows(r) + _comparison_rows(r) + _cost_rows(r)
    return _markdown_table(rows)


def _speed_rows(r: dict[str, Any]) -> list[Row]:
    """The machine, the network and the default path's own figures."""
    c = r["config"]
    return [
        ("device", f"{r['device_name']} ({r['device']}), torch {r['torch']}"),
        ("matrix-product peak, bf16 / fp32", f"{r['matmul_bf16_tflops']:.3g} / {r['matmul_fp32_tflops']:.3g} TFLOP/s"),
        ("network", f"width {c['base_width']}, depth {c['depth']}, {c['tile_size']}x{c['tile_size']} tiles"),
        ("GFLOP per image: train / infer (counted)", f"{r['gflop_train_tile']:.0f} / {r['gflop_infer_tile']:.0f}"),
        (
            "default path",
            f"{r['train_precision']}, micro-batch {r['train_micro']}, inference batch {r['infer_batch']}"
            + (", torch.compile" if r.get("compile") else ", eager"),
        ),
        (
            "training",
            f"{r['train_images_per_s']:.3f} images/s = {r['train_tflops']:.3f} TFLOP/s = "
            f"{100 * r['train_frac_of_peak']:.0f} % of the {r['precision']} peak",
        ),
        (
            "inference (tiles)",
            f"{r['infer_images_per_s']:.3f} images/s = {r['infer_tflops']:.3f} TFLOP/s = "
            f"{100 * r['infer_frac_of_peak']:.0f} % of peak",
        ),
        ("512x512 slice, overlap-tile, no TTA", f"{r['slice512_s']:.3f} s ({r['gflop_infer_slice_tile']:.0f} GFLOP)"),
    ]


def _comparison_rows(r: dict[str, Any]) -> list[Row]:
    """The default path against itself eager and against the fp32 baseline, where they were measured."""
    rows: list[Row] = []
    if "compile_speedup_train" in r:
        rows += [
            (
                "same path eager: train / infer / slice",
                f"{r['eager_train_images_per_s']:.3f} / "
                f"{r['eager_infer_images_per_s']:.3f} images/s / {r['eager_slice512_s']:.3f} s",
            ),
            (
                "torch.compile speed-up: train / infer",
                f"{r['compile_speedup_train']:.2f}x / {r['compile_speedup_infer']:.2f}x",
            ),
        ]
    if "train_speedup_vs_fp32" in r:
        rows += [
            (
                "fp32 eager baseline: train / infer",
                f"{r['baseline_train_images_per_s']:.3f} / {r['baseline_infer_images_per_s']:.3f} images/s",
            ),
            (
                "speed-up vs baseline: train / infer",
                f"{r['train_speedup_vs_fp32']:.2f}x / {r['infer_speedup_vs_fp32']:.2f}x",
            ),
        ]
    return rows


def _cost_rows(r: dict[str, Any]) -> list[Row]:
    """The augmentation's time, the whole step's peak memory and the micro-batch sweep."""
    rows: list[Row] = [
        (
            "augmentation of a batch",
            f"{r['augment_batch_s']:.2f} s = {100 * r['augment_frac_of_step']:.1f} % of a training step (one process)",
        )
    ]
    if "peak_rss_gib_batch16" in r:
        extra = f", GPU {r['cuda_peak_gib_batch16']:.2f} GiB" if "cuda_peak_gib_batch16" in r else ""
        rows.append(
            (
                f"peak memory, one batch-{r['config']['batch_size']} step",
                f"{r['peak_rss_gib_batch16']:.2f} GiB resident{extra} ({r['batch16_step_images_per_s']:.3f} images/s)",
            )
        )
    for s in r["micro_sweep"]:
        extra = f", GPU {s['cuda_peak_gib']:.2f} GiB" if "cuda_peak_gib" in s else ""
        rows.append(
            (
                f"micro-batch {s['micro']}",
                f"{s['images_per_s']:.3f} images/s, {s['peak_rss_gib']:.2f} GiB resident{extra}",
            )
        )
    return rows


def _markdown_table(rows: list[Row]) -> str:
    """Two columns, measure and value, the measures padded to one width."""
    width = max(len(k) for k, _ in rows)
    lines = [f"| {'measure':<{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {k:<{width}} | {v} |" for k, v in rows]
    return "\n".join(lines)
