"""``biounet export``: a checkpoint's network as ONNX, a torch.export program or a bioimage.io package."""

from __future__ import annotations

import argparse

from biounet.cli.checks import check_opset
from biounet.io.fileio import check_output_file

COMMANDS = ("export",)


def add_arguments(sub: argparse._SubParsersAction) -> None:
    ex = sub.add_parser(
        "export",
        help="export a trained network to ONNX, a torch.export program or a bioimage.io package",
        description="Write the network of a checkpoint as ONNX (for onnxruntime, no PyTorch "
        "needed) or as a torch.export program (.pt2), with a dynamic batch, height "
        "and width and the preprocessing contract stored in the file; or as a bioimage.io model "
        "package (.zip: PyTorch state dict and ONNX weights, test tensors, cover, documentation).",
    )
    ex.add_argument(
        "--checkpoint",
        required=True,
        metavar="CKPT_OR_RUN_DIR_OR_BUILTIN",
        help="checkpoint file, a run folder (its best.pt, else last.pt), or a built-in model's name",
    )
    ex.add_argument(
        "--format",
        required=True,
        choices=["onnx", "program", "bioimageio"],
        help="onnx (.onnx, onnxruntime), program (.pt2, torch.export) or bioimageio (.zip, model description 0.5)",
    )
    ex.add_argument("--out", required=True, metavar="FILE", help="file to write (.onnx, .pt2 or .zip)")
    ex.add_argument("--opset", type=int, default=18, help="ONNX opset (default: 18)")
    ex.add_argument(
        "--sample-image",
        metavar="IMAGE",
        help="bioimageio: an 8-bit image whose centre becomes the test input and cover (default: a synthetic "
        "EM-like image)",
    )
    ex.add_argument(
        "--author",
        action="append",
        default=[],
        metavar="NAME",
        help="bioimageio: an author of the model (repeatable; default: 'biounet developers' for a built-in model, "
        "else 'unknown')",
    )


def run(args: argparse.Namespace) -> int:
    from biounet.model.pretrained import builtin_path, is_builtin

    check_output_file(args.out, "--out")
    check_opset(args.opset, "onnx" if args.format == "bioimageio" else args.format)
    if args.format == "bioimageio":
        from biounet.deploy.bioimageio import write_package

        path = write_package(args.checkpoint, args.out, args.opset, args.sample_image, args.author)
    else:
        from biounet.deploy.export import export_model

        checkpoint = builtin_path(args.checkpoint) if is_builtin(args.checkpoint) else args.checkpoint
        path = export_model(checkpoint, args.format, args.out, args.opset)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0
