"""``biounet score``: the ISBI 2012 challenge's measures of a probability TIFF from any tool."""

from __future__ import annotations

import argparse

from biounet.cli.checks import check_input, parse_indices
from biounet.evaluation.metrics import CHALLENGE_METRICS
from biounet.io.fileio import check_output_file, write_json

COMMANDS = ("score",)


def add_arguments(sub: argparse._SubParsersAction) -> None:
    score = sub.add_parser(
        "score",
        help="score a probability TIFF from any tool with the ISBI 2012 measures",
        description="Score a (Z, H, W) probability TIFF written by any tool against a (Z, H, W) "
        "label TIFF (cell > 0, e.g. ISBI's 255 cell / 0 membrane) with the ISBI "
        "2012 challenge's pixel error, V_rand and V_info, as its Fiji code "
        "computes them.",
    )
    score.add_argument("labels", metavar="LABELS", help="label TIFF: (Z, H, W), cell where the value is above 0")
    score.add_argument("probs", metavar="PROBS", help="probability TIFF: (Z, H, W) float in [0, 1] or uint8 0..255")
    score.add_argument(
        "--polarity",
        choices=["membrane", "cell"],
        default="membrane",
        help="what a probability of 1 means (default: membrane, as `biounet predict` writes)",
    )
    score.add_argument("--indices", metavar="LIST", help="comma-separated slices to score (default: all)")
    score.add_argument("--json", metavar="FILE", help="write the report here (default: print only)")


def run(args: argparse.Namespace) -> int:
    from biounet.evaluation.evaluate import score_files

    indices = parse_indices(args.indices)
    if args.json:
        check_output_file(args.json, "--json")
    check_input(args.labels, "LABELS", "the (Z, H, W) label TIFF to score against")
    check_input(args.probs, "PROBS", "the (Z, H, W) probability TIFF to score")
    report = score_files(args.labels, args.probs, indices, args.polarity)
    for key in CHALLENGE_METRICS:
        print(f"{key:12s} {report[key]:.4f}  (threshold {report['thresholds'][key]:g})")
    if args.json:
        write_json(report, args.json)
    return 0
