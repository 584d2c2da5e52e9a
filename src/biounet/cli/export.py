"""``biounet export``: a checkpoint's network as ONNX or a torch.export program."""

from __future__ import annotations

import argparse

from ..fileio import check_output_file
from .checks import check_opset

COMMANDS = ("export",)


def add_arguments(sub: argparse._SubParsersAction) -> None:
    ex = sub.add_parser(
        "export",
        help="export a trained network to ONNX or a torch.export program",
        description="Write the network of a checkpoint as ONNX (for onnxruntime, no PyTorch "
        "needed) or as a torch.export program (.pt2), with a dynamic batch, height "
        "and width and the preprocessing contract stored in the file.",
    )
    ex.add_argument(
        "--checkpoint",
        required=True,
        metavar="CKPT_OR_RUN_DIR",
        help="checkpoint file, or a run folder (its best.pt, else last.pt)",
    )
    ex.add_argument(
        "--format",
        required=True,
        choices=["onnx", "program"],
        help="onnx (.onnx, onnxruntime) or program (.pt2, torch.export)",
    )
    ex.add_argument("--out", required=True, metavar="FILE", help="file to write (.onnx or .pt2)")
    ex.add_argument("--opset", type=int, default=18, help="ONNX opset (default: 18)")


def run(args: argparse.Namespace) -> int:
    from ..export import export_model

    check_output_file(args.out, "--out")
    check_opset(args.opset, args.format)
    path = export_model(args.checkpoint, args.format, args.out, args.opset)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0
