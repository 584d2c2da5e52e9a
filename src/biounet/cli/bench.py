"""``biounet bench``: training and inference speed and memory on this machine."""

from __future__ import annotations

import argparse
import sys

from biounet.cli.checks import parse_micro_sweep
from biounet.core.config import check_device
from biounet.io.fileio import check_output_file, write_json

COMMANDS = ("bench",)


def add_arguments(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser(
        "bench",
        help="measure training and inference speed and memory here",
        description="Measure, in one run and each in a process of its own: the machine's "
        "matrix-product peaks, training and inference images/s of the default "
        "path and of a plain float32 eager baseline, counted GFLOP per image, "
        "seconds per 512x512 slice, the peak memory of a batch-16 step and the "
        "augmentation cost. Prints one table.",
    )
    bench.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    bench.add_argument("--device", default="auto", help="cpu, cuda or cuda:N (default: auto)")
    bench.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "bf16", "fp16", "fp32"],
        help="precision of the default path (default: auto, as training)",
    )
    bench.add_argument("--base-width", type=int, default=64, help="network width (default: 64, the paper's)")
    bench.add_argument("--depth", type=int, default=4, help="network depth (default: 4)")
    bench.add_argument("--tile-size", type=int, default=572, help="training/inference tile side (default: 572)")
    bench.add_argument("--batch-size", type=int, default=16, help="global training batch (default: 16)")
    bench.add_argument("--threads", type=int, default=0, help="CPU threads (default: one per core)")
    bench.add_argument(
        "--repeats", type=int, default=3, help="timed runs per figure; the median is reported (default: 3)"
    )
    bench.add_argument("--warmup", type=int, default=1, help="untimed runs first (default: 1)")
    bench.add_argument("--infer-batch", type=int, default=4, help="tiles per inference pass (default: 4)")
    bench.add_argument(
        "--micro-sweep",
        default="",
        metavar="LIST",
        help="comma-separated micro-batch sizes to time one by one, e.g. 1,2,4,8 (default: none)",
    )
    bench.add_argument("--no-baseline", action="store_true", help="skip the float32 eager baseline")
    bench.add_argument("--no-memory", action="store_true", help="skip the whole batch-16 step (memory)")
    bench.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the default path through torch.compile, and the same path eager for comparison "
        "(default: as `biounet train`, on for CUDA); the baseline stays eager",
    )


def run(args: argparse.Namespace) -> int:
    from biounet.bench.runner import BenchConfig, format_table, run_bench

    check_device(args.device)
    if args.json:
        check_output_file(args.json, "--json")
    sweep = parse_micro_sweep(args.micro_sweep)
    cfg = BenchConfig(
        device=args.device,
        base_width=args.base_width,
        depth=args.depth,
        tile_size=args.tile_size,
        batch_size=args.batch_size,
        precision=args.precision,
        threads=args.threads,
        repeats=args.repeats,
        warmup=args.warmup,
        infer_batch=args.infer_batch,
        micro_sweep=sweep,
        baseline=not args.no_baseline,
        memory=not args.no_memory,
        compile=args.compile,
    )
    result = run_bench(cfg, log=lambda text: print(text, file=sys.stderr, flush=True))
    print(format_table(result))
    if args.json:
        write_json(result, args.json)
    return 0
