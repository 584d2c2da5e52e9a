"""``biounet evaluate`` and ``predict``: any model (``--model REF``), run overlap-tile."""

from __future__ import annotations

import argparse
from typing import Any

from biounet.cli.checks import check_inference_options, check_input, check_model_ref, checked_fold
from biounet.cli.options import inference_options, model_options, painted_options, runtime_options
from biounet.cli.volumes import add_volume_options, predict_volumes, progress_bar, volume_run, volume_settings
from biounet.core.config import TrainConfig
from biounet.core.errors import ConfigError
from biounet.data.affinities import offsets_for
from biounet.evaluation.metrics import CHALLENGE_METRICS, REPORTED_METRICS, per_class_table
from biounet.instances.methods import METHODS as INSTANCE_METHODS
from biounet.instances.methods import check_inputs
from biounet.io.fileio import check_output_dir, check_output_file, write_json

COMMANDS = ("evaluate", "predict")
DATA_FITS = "the ISBI 2012 folder, a folder with images/ and masks/, or an image volume (with --masks)"
MASKS_FITS = "the label volume of --data (PATH.zarr, PATH.h5:/DATASET or PATH.tif)"


def add_arguments(sub: argparse._SubParsersAction) -> None:
    shared = [model_options(exported=True), runtime_options(training=False), inference_options()]
    ev = sub.add_parser(
        "evaluate",
        parents=[*shared, painted_options()],
        help="segment a fold's validation images and score them",
        description="Segment the held-out images of a fold at full resolution (overlap-tile) "
        "and write the metrics report.",
    )
    ev.add_argument(
        "--data",
        required=True,
        metavar="PATH",
        help="the ISBI 2012 folder, a folder of image/mask pairs, or an image volume (PATH.zarr, PATH.h5:/DATASET, "
        "PATH.tif) with --masks",
    )
    ev.add_argument(
        "--masks",
        default=None,
        metavar="PATH",
        help="the label volume of an image volume in --data (same z, y, x shape)",
    )
    ev.add_argument(
        "--fold",
        default=None,
        help="fold to score (default: the one the checkpoint held out); none: every image of --data that the "
        "model was not trained on (a separate labelled set)",
    )
    ev.add_argument("--json", metavar="FILE", help="write the report here (default: print only)")
    ev.add_argument("--allow-train-slices", action="store_true", help="score even images the checkpoint was trained on")
    _label_options(
        ev,
        "also score the instances made by each comma-separated METHOD (their one-pixel boundaries, the "
        "challenge's way), side by side",
        several=True,
    )
    pr = sub.add_parser(
        "predict",
        parents=shared,
        help="segment images with a trained model",
        description="Segment images at full resolution. Writes per input <stem>_membrane.tif "
        "(float32 (Z, H, W) membrane probability; <stem>_probs.tif (Z, C, H, W) for "
        "more classes) and <stem>_mask.tif (hard mask: 255 = cell, 0 = membrane); with --labels "
        "<stem>_labels.tif and <stem>_objects.csv.",
    )
    pr.add_argument("inputs", nargs="+", metavar="INPUT", help="image file, multi-page TIFF, folder, or volume")
    pr.add_argument("--out", required=True, metavar="DIR", help="output folder")
    _label_options(pr, "also write <stem>_labels.tif: uint32 cell instances by METHOD")
    pr.add_argument(
        "--measure",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with --labels, also write <stem>_objects.csv: a row per cell of every slice (slice, label, area, "
        "perimeter, equivalent_diameter, mean_intensity of the input, centroid_y, centroid_x, unit; in the "
        "input's calibrated unit when it has one, else pixels; docs/instances.md) and print the count and the "
        "mean area (default: on with --labels; --no-measure: not)",
    )
    pr.add_argument("--overlay", action="store_true", help="also write PNGs of the image with predicted membranes")
    add_volume_options(pr)


def run(args: argparse.Namespace) -> int:
    return _run_evaluate(args) if args.command == "evaluate" else _run_predict(args)


def _label_options(p: argparse.ArgumentParser, what: str, several: bool = False) -> None:
    p.add_argument(
        "--labels",
        nargs="?",
        const="watershed",
        default=None,
        choices=None if several else sorted(INSTANCE_METHODS),
        metavar="METHODS" if several else "METHOD",
        help=f"{what} (default watershed; multicut, gasp, objects; with a model trained with --affinities mws12 "
        f"also mws, multicut-aff, gasp-aff: docs/instances.md)",
    )
    p.add_argument(
        "--label-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a parameter of the --labels method, e.g. beta=0.4 (repeatable)"
        + ("; with several methods, name the method: multicut:beta=0.4" if several else ""),
    )


def _open_model(args: argparse.Namespace) -> tuple[Any, TrainConfig, dict[str, Any]]:
    """(predictor, config, description) of ``--model``, as any command that runs a model opens it."""
    from biounet.models import open_model

    kind = check_model_ref(args.model)
    return open_model(args.model, args.device, args.precision, args.threads, kind=kind)


def _run_evaluate(args: argparse.Namespace) -> int:
    from biounet.data import kfold_split, open_dataset
    from biounet.evaluation.evaluate import check_not_training_slices, untrained_indices
    from biounet.segment.inference import describe_predictor

    check_inference_options(args)
    if args.json:
        check_output_file(args.json, "--json")
    check_input(args.data, "--data", DATA_FITS)
    if args.masks is not None:
        check_input(args.masks, "--masks", MASKS_FITS)
    methods, label_params = _label_methods(args)
    predictor, cfg, ckpt = _open_model(args)
    check_inputs(methods, offsets_for(cfg.affinities))  # before any image is segmented
    fold = checked_fold(args.fold if args.fold is not None else cfg.fold, cfg.folds)
    data = open_dataset(args.data, masks=args.masks, **cfg.mask_reading(args.painted))
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
    report = _score(args, predictor, cfg, data, val, methods, label_params)
    report.update(checkpoint=ckpt["path"], step=ckpt["step"], fold=fold, tta=args.tta, **describe_predictor(predictor))
    _print_report(report)
    if args.json:
        write_json(report, args.json)
        print(f"report written to {args.json}")
    return 0


def _score(
    args: argparse.Namespace,
    predictor: Any,
    cfg: TrainConfig,
    data: Any,
    val: list[int],
    methods: list[str],
    label_params: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """Segment and score the images ``val`` of ``data``, on a progress bar where one shows."""
    from biounet.data.context import with_context_data
    from biounet.evaluation.evaluate import evaluate_images

    bar = progress_bar(len(val), "image", args.progress)
    try:
        return evaluate_images(
            predictor,
            with_context_data(data, cfg.context),  # a network trained with --context takes neighbouring sections
            val,
            cfg.depth,
            cfg.padding,
            args.tile,
            args.tile_batch,
            args.tta,
            progress=(lambda n: bar.update(n - bar.n)) if bar else None,
            labels=methods,
            label_params=label_params,
            num_classes=cfg.classes,
            offsets=offsets_for(cfg.affinities),
        )
    finally:
        if bar:
            bar.close()


def _print_report(report: dict[str, Any]) -> None:
    for key in REPORTED_METRICS:
        if key in report:
            print(f"{key:15s} {report[key]:.4f}")
    if "thresholds" in report:
        print("thresholds     ", ", ".join(f"{k} {v}" for k, v in report["thresholds"].items()))
    if "instances" in report:
        _print_instances(report["instances"])
    if len(report.get("per_class", {})) > 2:
        print(per_class_table(report["per_class"]))


def _print_instances(by_method: dict[str, dict[str, Any]]) -> None:
    """Every method's scores side by side (a column each), then each method's parameters."""
    keys = [*CHALLENGE_METRICS, "object_f1", "object_matched_iou", "object_foreground_iou"]
    keys = [k for k in keys if any(k in inst for inst in by_method.values())]
    width = max(12, *(len(m) for m in by_method))
    print("instances      " + " ".join(f"{m:>{width}s}" for m in by_method))
    for key in keys:
        cells = [f"{inst[key]:{width}.4f}" if key in inst else " " * (width - 1) + "-" for inst in by_method.values()]
        print(f"  {key:13s}" + " ".join(cells))
    for method, inst in by_method.items():
        params = ", ".join(f"{k}={v}" for k, v in inst["params"].items())
        if params:
            print(f"  {method}: {params}")


def _run_predict(args: argparse.Namespace) -> int:
    from biounet.segment.predict import list_inputs
    from biounet.segment.volumes import open_volumes, output_format

    check_inference_options(args)
    check_output_dir(args.out, "--out")
    methods, by_method = _label_methods(args)
    label_params = by_method[methods[0]] if methods else {}
    if args.measure and not methods:
        raise ConfigError("--measure measures the cells of --labels; add --labels METHOD")
    measure = bool(methods) and args.measure is not False  # on by default with --labels
    volumes = [item for item in args.inputs if output_format(item, args.format) == "ome-zarr"]
    files = list_inputs([item for item in args.inputs if item not in volumes])
    if not volumes and (args.dask_workers or args.scheduler):
        raise ConfigError("--dask-workers and --scheduler run volumes block-wise; add --format ome-zarr")
    settings = volume_settings(args, label_params, measure) if volumes else None
    opened = open_volumes(volumes, volume_run(args)) if volumes else []  # every input checked before any work
    if measure:
        _check_tables(args.out, opened, files)
    predictor, cfg, ckpt = _open_model(args)
    check_inputs(methods, offsets_for(cfg.affinities))  # before any slice is segmented
    if opened:
        predict_volumes(opened, predictor, cfg, ckpt, args, settings)
    if files:
        _predict_files(args, files, predictor, cfg, label_params, measure)
    return 0


def _check_tables(out: str, volumes: list[Any], files: list[Any]) -> None:
    """Refuse a volume and a file of one stem: both would write OUT/<stem>_objects.csv."""
    from biounet.segment.objects import objects_path

    stems = {f.stem: f for f in files}
    for volume in volumes:
        if volume.name in stems:
            raise ConfigError(
                f"inputs {stems[volume.name]} and {volume.spec} would both write {objects_path(out, volume.name)}; "
                f"segment them into separate --out folders, or rename one"
            )


def _predict_files(
    args: argparse.Namespace,
    files: list[Any],
    predictor: Any,
    cfg: TrainConfig,
    label_params: dict[str, Any],
    measure: bool,
) -> None:
    """The inputs read whole: TIFFs (and PNGs) out, on a progress bar of slices where one shows."""
    from biounet.segment.predict import predict_files

    bar = progress_bar(0, "slice", args.progress)
    try:
        predict_files(
            files,
            predictor,
            cfg,
            args.out,
            args.tile,
            args.tile_batch,
            args.tta,
            args.labels,
            args.overlay,
            log=bar.write if bar else print,
            progress=bar.update if bar else None,
            label_params=label_params,
            measure=measure,
        )
    finally:
        if bar:
            bar.close()


def _label_methods(args: argparse.Namespace) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """(the --labels methods, per method its parameters from --label-param), checked."""
    from biounet.instances.methods import parse_method_params, parse_methods

    if args.label_param and not args.labels:
        raise ConfigError("--label-param sets a parameter of the --labels method; add --labels METHOD")
    methods = parse_methods(args.labels) if args.labels else []
    return methods, parse_method_params(methods, args.label_param)
