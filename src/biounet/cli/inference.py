"""``biounet evaluate`` and ``predict``: a checkpoint or an exported model, run overlap-tile."""

from __future__ import annotations

import argparse
from typing import Any

from biounet.cli.checks import check_inference_options, checked_fold
from biounet.cli.volumes import add_volume_options, is_volume_input, predict_volumes, progress_bar, volume_settings
from biounet.core.config import TrainConfig
from biounet.core.errors import ConfigError
from biounet.evaluation.metrics import CHALLENGE_METRICS, REPORTED_METRICS
from biounet.instances.methods import METHODS as INSTANCE_METHODS
from biounet.io.fileio import check_output_dir, check_output_file, write_json

COMMANDS = ("evaluate", "predict")


def add_arguments(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser(
        "evaluate",
        help="segment a fold's validation images and score them",
        description="Segment the held-out images of a fold at full resolution (overlap-tile) "
        "and write the metrics report.",
    )
    _model_options(ev)
    ev.add_argument(
        "--data",
        required=True,
        help="the ISBI 2012 folder, a folder of image/mask pairs, or an image volume (PATH.zarr, PATH.h5:/DATASET, "
        "PATH.tif) with --masks",
    )
    ev.add_argument("--masks", default=None, help="the label volume of an image volume in --data (same z, y, x shape)")
    ev.add_argument(
        "--fold",
        default=None,
        help="fold to score (default: the one the checkpoint held out); none: every image of --data that the "
        "model was not trained on (a separate labelled set)",
    )
    ev.add_argument("--json", metavar="FILE", help="write the report here (default: print only)")
    ev.add_argument("--allow-train-slices", action="store_true", help="score even images the checkpoint was trained on")
    _label_options(ev, "also score the instances made by METHOD (their one-pixel boundaries, the challenge's way)")
    _inference_options(ev)
    pr = sub.add_parser(
        "predict",
        help="segment images with a trained model",
        description="Segment images at full resolution. Writes per input <stem>_membrane.tif "
        "(float32 (Z, H, W) membrane probability; <stem>_probs.tif (Z, C, H, W) for "
        "more classes) and <stem>_mask.tif (hard mask: 255 = cell, 0 = membrane).",
    )
    pr.add_argument("inputs", nargs="+", metavar="INPUT", help="image file, multi-page TIFF, or folder")
    _model_options(pr)
    pr.add_argument("--out", required=True, help="output folder")
    _label_options(pr, "also write <stem>_labels.tif: uint32 cell instances by METHOD")
    pr.add_argument("--overlay", action="store_true", help="also write PNGs of the image with predicted membranes")
    _inference_options(pr)
    add_volume_options(pr)


def run(args: argparse.Namespace) -> int:
    return _run_evaluate(args) if args.command == "evaluate" else _run_predict(args)


def _label_options(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--labels",
        nargs="?",
        const="watershed",
        default=None,
        choices=sorted(INSTANCE_METHODS),
        metavar="METHOD",
        help=f"{what} (default watershed; multicut, gasp, objects: docs/instances.md)",
    )
    p.add_argument(
        "--label-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a parameter of the --labels method, e.g. beta=0.4 (repeatable)",
    )


def _model_options(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--checkpoint", metavar="CKPT_OR_RUN_DIR", help="checkpoint file, or a run folder (its best.pt, else last.pt)"
    )
    group.add_argument(
        "--model",
        metavar="FILE",
        help="a built-in model (`biounet models`), or a file written by `biounet export`: .onnx (run by "
        "onnxruntime, no PyTorch needed), .pt2, or .zip (a bioimage.io package)",
    )


def _inference_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "bf16", "fp16", "fp32"],
        help="autocast precision (default: auto, as training)",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--tta", action="store_true", help="average the 8 flips/rotations (8x the compute)")
    p.add_argument(
        "--tile", type=int, default=None, help="input tile side (default: the geometry that wastes least compute)"
    )
    p.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass (default: 4)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: one per core)")


def _prepare_inference(args: argparse.Namespace) -> tuple[Any, TrainConfig, dict[str, Any]]:
    check_inference_options(args)
    from biounet.models import open_model, requested_kind

    kind = requested_kind(args.model)  # --model '' or a file of another kind: the exporter's message says what fits
    ref = args.checkpoint if args.model is None else args.model
    return open_model(ref, args.device, args.precision, args.threads, kind=kind)


def _run_evaluate(args: argparse.Namespace) -> int:
    from biounet.data import kfold_split, open_dataset
    from biounet.evaluation.evaluate import check_not_training_slices, evaluate_images, untrained_indices
    from biounet.segment.inference import describe_predictor

    if args.json:
        check_output_file(args.json, "--json")
    predictor, cfg, ckpt = _prepare_inference(args)
    fold = checked_fold(args.fold if args.fold is not None else cfg.fold, cfg.folds)
    data = open_dataset(args.data, cfg.classes, cfg.in_channels, cfg.ignore_value, cfg.mask_threshold, args.masks)
    if fold == "none":  # a separate labelled set: every image the model was not trained on
        val = list(range(len(data)))
        if not args.allow_train_slices:
            val = untrained_indices(ckpt, data, val)
    else:
        _, val = kfold_split(len(data), fold, cfg.folds)
    # --fold none already left out the fingerprinted training images; without fingerprints the older rule applies
    if not args.allow_train_slices and not (fold == "none" and ckpt.get("train_digests")):
        check_not_training_slices(ckpt, cfg, data, args.data, val)
    print(f"evaluating {ckpt['path']} (step {ckpt['step']}) on fold {fold}: {len(val)} images", flush=True)
    bar = progress_bar(len(val), "image")
    try:
        report = evaluate_images(
            predictor,
            data,
            val,
            cfg.depth,
            cfg.padding,
            args.tile,
            args.batch_size,
            args.tta,
            progress=(lambda n: bar.update(n - bar.n)) if bar else None,
            labels=args.labels,
            label_params=_label_params(args),
        )
    finally:
        if bar:
            bar.close()
    report.update(checkpoint=ckpt["path"], step=ckpt["step"], fold=fold, tta=args.tta, **describe_predictor(predictor))
    for key in REPORTED_METRICS:
        if key in report:
            print(f"{key:15s} {report[key]:.4f}")
    if "thresholds" in report:
        print("thresholds     ", ", ".join(f"{k} {v}" for k, v in report["thresholds"].items()))
    if "instances" in report:
        inst = report["instances"]
        params = ", ".join(f"{k}={v}" for k, v in inst["params"].items())
        print(f"instances by {inst['method']}" + (f" ({params})" if params else "") + ":")
        for key in [*CHALLENGE_METRICS, "object_f1", "object_matched_iou", "object_foreground_iou"]:
            if key in inst:
                print(f"  {key:13s} {inst[key]:.4f}")
    if args.json:
        write_json(report, args.json)
        print(f"report written to {args.json}")
    return 0


def _run_predict(args: argparse.Namespace) -> int:
    from biounet.segment.predict import list_inputs, predict_files

    check_output_dir(args.out, "--out")
    volumes = [item for item in args.inputs if is_volume_input(item, args.format)]
    files = list_inputs([item for item in args.inputs if item not in volumes])
    settings = volume_settings(args, _label_params(args)) if volumes else None
    predictor, cfg, ckpt = _prepare_inference(args)
    if volumes:
        predict_volumes(volumes, predictor, cfg, ckpt, args, settings)
    elif args.dask_workers or args.scheduler:
        raise ConfigError("--dask-workers and --scheduler run volumes block-wise; add --format ome-zarr")
    if not files:
        return 0
    bar = progress_bar(0, "slice")
    try:
        predict_files(
            files,
            predictor,
            cfg,
            args.out,
            args.tile,
            args.batch_size,
            args.tta,
            args.labels,
            args.overlay,
            log=bar.write if bar else print,
            progress=bar.update if bar else None,
            label_params=_label_params(args),
        )
    finally:
        if bar:
            bar.close()
    return 0


def _label_params(args: argparse.Namespace) -> dict[str, Any]:
    from biounet.instances.methods import parse_params

    if args.label_param and not args.labels:
        raise ConfigError("--label-param sets a parameter of the --labels method; add --labels METHOD")
    return parse_params(args.labels, args.label_param) if args.labels else {}
