"""``biounet export``: a model's network (``--model``: a checkpoint, run folder or built-in model) as
ONNX, a torch.export program or a bioimage.io package."""

from __future__ import annotations

import argparse

from biounet.cli.checks import check_input, check_model_ref, check_opset
from biounet.cli.options import model_options
from biounet.io.fileio import check_output_file

COMMANDS = ("export",)


def add_arguments(sub: argparse._SubParsersAction) -> None:
    ex = sub.add_parser(
        "export",
        parents=[model_options(exported=False)],
        help="export a trained network to ONNX, a torch.export program or a bioimage.io package",
        description="Write the network of a checkpoint as ONNX (for onnxruntime, no PyTorch "
        "needed) or as a torch.export program (.pt2), with a dynamic batch, height "
        "and width and the preprocessing contract stored in the file; or as a bioimage.io model "
        "package (.zip: PyTorch state dict and ONNX weights, test tensors, cover, documentation).",
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
    from biounet.model.pretrained import builtin_path

    kind = check_model_ref(args.model, exported=False, use="export")
    check_output_file(args.out, "--out")
    check_opset(args.opset, "onnx" if args.format == "bioimageio" else args.format)
    if args.sample_image is not None:
        check_input(args.sample_image, "--sample-image", "an 8-bit PNG or TIFF image, or omit it for a synthetic one")
    if args.format == "bioimageio":
        from biounet.deploy.bioimageio import write_package

        path = write_package(args.model, args.out, args.opset, args.sample_image, args.author)
    else:
        from biounet.deploy.export import export_model

        checkpoint = builtin_path(args.model) if kind == "builtin" else args.model
        path = export_model(checkpoint, args.format, args.out, args.opset)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0
