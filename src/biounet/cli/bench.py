"""``biounet bench``: training and inference speed and memory on this machine."""

from __future__ import annotations

import argparse
import sys

from biounet.cli.checks import check_runtime, check_tile_batch, parse_micro_sweep
from biounet.cli.options import config_options, deprecated, runtime_options, tile_batch_options
from biounet.io.fileio import check_output_file, write_json

COMMANDS = ("bench",)
NETWORK = ("base_width", "depth", "tile_size", "batch_size", "compile")  # the training's network and step


def add_arguments(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser(
        "bench",
        parents=[runtime_options(training=False), config_options(NETWORK), tile_batch_options()],
        help="measure training and inference speed and memory here",
        description="Measure, in one run and each in a process of its own: the machine's "
        "matrix-product peaks, training and inference images/s of the default "
        "path and of a plain float32 eager baseline, counted GFLOP per image, "
        "seconds per 512x512 slice, the peak memory of a batch-16 step and the "
        "augmentation cost. Prints one table; the progress lines go to stderr (--progress off: none). "
        "With --compile the default path runs through torch.compile and is timed eager too, for "
        "comparison; the baseline stays eager.",
    )
    bench.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    bench.add_argument(
        "--repeats", type=int, default=3, help="timed runs per figure; the median is reported (default: 3)"
    )
    bench.add_argument("--warmup", type=int, default=1, help="untimed runs first (default: 1)")
    bench.add_argument(
        "--micro-sweep",
        default="",
        metavar="LIST",
        help="comma-separated micro-batch sizes to time one by one, e.g. 1,2,4,8 (default: none)",
    )
    bench.add_argument("--no-baseline", action="store_true", help="skip the float32 eager baseline")
    bench.add_argument("--no-memory", action="store_true", help="skip the whole batch-16 step (memory)")
    deprecated(bench, "--infer-batch", "--tile-batch", dest="tile_batch", type=int, metavar="N")


def run(args: argparse.Namespace) -> int:
    from biounet.bench.runner import BenchConfig, format_table, run_bench

    check_runtime(args)
    check_tile_batch(args.tile_batch)
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
        infer_batch=args.tile_batch,
        micro_sweep=sweep,
        baseline=not args.no_baseline,
        memory=not args.no_memory,
        compile=args.compile,
    )
    quiet = args.progress == "off"
    result = run_bench(cfg, log=lambda text: None if quiet else print(text, file=sys.stderr, flush=True))
    print(format_table(result))
    if args.json:
        write_json(result, args.json)
    return 0
