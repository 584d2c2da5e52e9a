"""The ``biounet`` command: parses options once and hands one config to the library.

Subcommands: ``train``, ``demo`` (train on embedded synthetic EM-like data), ``cv``,
``evaluate``, ``predict``, ``export``, ``bench``, ``fetch``.
User errors (bad options, missing files) print one line and exit 2; set BIOUNET_DEBUG=1 to see
the traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from . import __version__
from .config import TrainConfig, add_config_arguments, check_device, resolve
from .errors import FAILURE, BiounetError, ConfigError, describe_os_error
from .fileio import check_output_dir, check_output_file

# The embedded demo: a small U-Net (same architecture, width 16) on synthetic EM-like images,
# sized to finish in a couple of minutes on two CPU cores.
DEMO_PRESET = TrainConfig(
    fold="1", base_width=16, tile_size=252, batch_size=4, steps=100, lr=1e-3, log_every=10,
    checkpoint_every=50, keep_checkpoints=3, name="demo",
)
DEMO_IMAGES, DEMO_SIZE = 12, 256


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the problem and where to read more, no usage dump."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _train_parser(sub, name: str, defaults: TrainConfig, help_text: str, description: str):
    p = sub.add_parser(name, help=help_text, description=description)
    add_config_arguments(p, defaults)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="biounet", description="U-Net for 2D biomedical image segmentation "
                                     "(Ronneberger et al. 2015).")
    parser.add_argument("--version", action="version", version=f"biounet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _train_parser(sub, "train", TrainConfig(), "train a U-Net",
                  "Train a U-Net on the ISBI 2012 data or a folder of image/mask pairs. Options come "
                  "from the defaults below, then --config FILE, then the flags given.")
    _train_parser(sub, "demo", DEMO_PRESET, "train a small U-Net on synthetic EM-like images (offline)",
                  "Generate synthetic EM-like images with exact membrane labels into OUT/synthetic and "
                  "train a small U-Net on them; takes a few minutes on 2 CPU cores. Every train option "
                  "applies.")
    cv = sub.add_parser("cv", help="cross-validation: train and evaluate the folds in turn",
                        description="Train and evaluate the folds in turn (each in OUT/fold-K, resumable), "
                                    "then write OUT/cv.json and OUT/cv.md. Every train option applies.")
    add_config_arguments(cv, TrainConfig(), skip=("fold", "folds"))
    cv.add_argument("--folds", dest="fold_list", default="0,1,2,3,4", metavar="LIST",
                    help="comma-separated folds to run (default: 0,1,2,3,4; the number of folds is the "
                         "config key `folds`, default 5)")
    ev = sub.add_parser("evaluate", help="segment a fold's validation images and score them",
                        description="Segment the held-out images of a fold at full resolution (overlap-tile) "
                                    "and write the metrics report.")
    _model_options(ev)
    ev.add_argument("--data", required=True, help="the ISBI 2012 folder or a folder of image/mask pairs")
    ev.add_argument("--fold", default=None, help="fold to score (default: the one the checkpoint held out)")
    ev.add_argument("--json", metavar="FILE", help="write the report here (default: print only)")
    ev.add_argument("--allow-train-slices", action="store_true",
                    help="score even images the checkpoint was trained on")
    _inference_options(ev)
    pr = sub.add_parser("predict", help="segment images with a trained model",
                        description="Segment images at full resolution. Writes per input <stem>_membrane.tif "
                                    "(float32 (Z, H, W) membrane probability; <stem>_probs.tif (Z, C, H, W) for "
                                    "more classes) and <stem>_mask.tif (hard mask: 255 = cell, 0 = membrane).")
    pr.add_argument("inputs", nargs="+", metavar="INPUT", help="image file, multi-page TIFF, or folder")
    _model_options(pr)
    pr.add_argument("--out", required=True, help="output folder")
    pr.add_argument("--labels", action="store_true", help="also write <stem>_labels.tif: uint32 cell instances")
    pr.add_argument("--overlay", action="store_true", help="also write PNGs of the image with predicted membranes")
    _inference_options(pr)
    ex = sub.add_parser("export", help="export a trained network to ONNX or a torch.export program",
                        description="Write the network of a checkpoint as ONNX (for onnxruntime, no PyTorch "
                                    "needed) or as a torch.export program (.pt2), with a dynamic batch, height "
                                    "and width and the preprocessing contract stored in the file.")
    ex.add_argument("--checkpoint", required=True, metavar="CKPT_OR_RUN_DIR",
                    help="checkpoint file, or a run folder (its best.pt, else last.pt)")
    ex.add_argument("--format", required=True, choices=["onnx", "program"],
                    help="onnx (.onnx, onnxruntime) or program (.pt2, torch.export)")
    ex.add_argument("--out", required=True, metavar="FILE", help="file to write (.onnx or .pt2)")
    ex.add_argument("--opset", type=int, default=18, help="ONNX opset (default: 18)")
    bench = sub.add_parser("bench", help="measure training and inference speed and memory here",
                           description="Measure, in one run and each in a process of its own: the machine's "
                                       "matrix-product peaks, training and inference images/s of the default "
                                       "path and of a plain float32 eager baseline, counted GFLOP per image, "
                                       "seconds per 512x512 slice, the peak memory of a batch-16 step and the "
                                       "augmentation cost. Prints one table.")
    bench.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    bench.add_argument("--device", default="auto", help="cpu, cuda or cuda:N (default: auto)")
    bench.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"],
                       help="precision of the default path (default: auto, as training)")
    bench.add_argument("--base-width", type=int, default=64, help="network width (default: 64, the paper's)")
    bench.add_argument("--depth", type=int, default=4, help="network depth (default: 4)")
    bench.add_argument("--tile-size", type=int, default=572, help="training/inference tile side (default: 572)")
    bench.add_argument("--batch-size", type=int, default=16, help="global training batch (default: 16)")
    bench.add_argument("--threads", type=int, default=0, help="CPU threads (default: one per core)")
    bench.add_argument("--repeats", type=int, default=3, help="timed runs per figure; the median is "
                       "reported (default: 3)")
    bench.add_argument("--warmup", type=int, default=1, help="untimed runs first (default: 1)")
    bench.add_argument("--infer-batch", type=int, default=4, help="tiles per inference pass (default: 4)")
    bench.add_argument("--micro-sweep", default="", metavar="LIST",
                       help="comma-separated micro-batch sizes to time one by one, e.g. 1,2,4,8 (default: none)")
    bench.add_argument("--no-baseline", action="store_true", help="skip the float32 eager baseline")
    bench.add_argument("--no-memory", action="store_true", help="skip the whole batch-16 step (memory)")
    bench.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                       help="run the default path through torch.compile, and the same path eager for comparison "
                       "(default: as `biounet train`, on for CUDA); the baseline stays eager")
    fetch = sub.add_parser("fetch", help="download a dataset and verify it",
                           description="Download a public dataset and verify the SHA-256 of its pixels.")
    fetch.add_argument("dataset", choices=["isbi2012"], help="dataset name")
    fetch.add_argument("dir", help="folder to write the files into")
    fetch.add_argument("--url", action="append", default=None, metavar="BASE_URL",
                       help="base URL that holds the three files (repeatable; tried in order; "
                            "default: the known public locations)")
    fetch.add_argument("--timeout", type=float, default=60.0, help="seconds per connection attempt (default: 60)")
    score = sub.add_parser("score", help="score a probability TIFF from any tool with the ISBI 2012 measures",
                           description="Score a (Z, H, W) probability TIFF written by any tool against a (Z, H, W) "
                                       "label TIFF (cell > 0, e.g. ISBI's 255 cell / 0 membrane) with the ISBI "
                                       "2012 challenge's pixel error, V_rand and V_info, as its Fiji code "
                                       "computes them.")
    score.add_argument("labels", help="label TIFF: (Z, H, W), cell where the value is above 0")
    score.add_argument("probs", help="probability TIFF: (Z, H, W) float in [0, 1] or uint8 0..255")
    score.add_argument("--polarity", choices=["membrane", "cell"], default="membrane",
                       help="what a probability of 1 means (default: membrane, as `biounet predict` writes)")
    score.add_argument("--indices", metavar="LIST", help="comma-separated slices to score (default: all)")
    score.add_argument("--json", metavar="FILE", help="write the report here (default: print only)")
    return parser


def _model_options(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--checkpoint", metavar="CKPT_OR_RUN_DIR",
                       help="checkpoint file, or a run folder (its best.pt, else last.pt)")
    group.add_argument("--model", metavar="FILE", help="a file written by `biounet export`: .onnx (run by "
                       "onnxruntime, no PyTorch needed) or .pt2")


def _inference_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"],
                   help="autocast precision (default: auto, as training)")
    p.add_argument("--device", default="auto", help="cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--tta", action="store_true", help="average the 8 flips/rotations (8x the compute)")
    p.add_argument("--tile", type=int, default=None,
                   help="input tile side (default: the geometry that wastes least compute)")
    p.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass (default: 4)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: one per core)")


def _progress(total: int, unit: str):
    """A tqdm bar with an ETA on a terminal; None (quiet) when output goes to a log."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, dynamic_ncols=True, leave=False)


def check_inference_options(args: argparse.Namespace) -> None:
    """The inference flags of ``predict`` and ``evaluate``, checked before any file is read."""
    from .inference import MAX_TILE_SIDE

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.threads < 0:
        raise ConfigError(f"--threads must not be negative, got {args.threads}")
    if args.tile is not None and not 1 <= args.tile <= MAX_TILE_SIDE:
        raise ConfigError(f"--tile {args.tile}: a tile side must be between 1 and {MAX_TILE_SIDE} pixels; omit "
                          "--tile to let biounet choose")
    check_device(args.device)


def _prepare_inference(args):
    check_inference_options(args)
    if args.model is not None:  # an exported file (even --model ''): the ONNX path imports no PyTorch
        from .export import load_exported

        if args.precision not in ("auto", "fp32"):
            raise ConfigError(f"--precision {args.precision}: an exported model runs in float32; drop --precision")
        return load_exported(args.model, args.device, args.threads)
    from .device import set_threads
    from .evaluate import load_predictor

    set_threads(args.threads)
    return load_predictor(args.checkpoint, args.device, args.precision)


def _run_evaluate(args: argparse.Namespace) -> int:
    from .data import kfold_split, read_dataset
    from .evaluate import check_not_training_slices, evaluate_images, write_json_atomic
    from .inference import describe_predictor

    if args.json:
        check_output_file(args.json, "--json")
    predictor, cfg, ckpt = _prepare_inference(args)
    fold = args.fold if args.fold is not None else cfg.fold
    if fold == "all" or not (str(fold).isdigit() and 0 <= int(fold) < cfg.folds):
        raise ConfigError(f"--fold must be one of 0..{cfg.folds - 1} (the model's {cfg.folds} folds), got {fold!r}"
                          + ("; the model was trained on every image (--fold all), so name a fold to score"
                             if fold == "all" else ""))
    data = read_dataset(args.data, cfg.classes, cfg.in_channels, cfg.ignore_value, cfg.mask_threshold)
    _, val = kfold_split(len(data), fold, cfg.folds)
    if not args.allow_train_slices:
        check_not_training_slices(ckpt, cfg, data, args.data, val)
    print(f"evaluating {ckpt['path']} (step {ckpt['step']}) on fold {fold}: {len(val)} images", flush=True)
    bar = _progress(len(val), "image")
    try:
        report = evaluate_images(predictor, data, val, cfg.depth, cfg.padding, args.tile, args.batch_size, args.tta,
                                 progress=(lambda n: bar.update(n - bar.n)) if bar else None)
    finally:
        if bar:
            bar.close()
    report.update(checkpoint=ckpt["path"], step=ckpt["step"], fold=fold, tta=args.tta, **describe_predictor(predictor))
    for key in ("dice_coeff", "dice_coeff_388", "pixel_error", "pixel_mismatch", "v_rand", "v_info"):
        if key in report:
            print(f"{key:15s} {report[key]:.4f}")
    if "thresholds" in report:
        print("thresholds     ", ", ".join(f"{k} {v}" for k, v in report["thresholds"].items()))
    if args.json:
        write_json_atomic(report, args.json)
        print(f"report written to {args.json}")
    return 0


def _run_cv(args: argparse.Namespace) -> int:
    from .crossval import parse_folds, run_cv

    fold_list = args.fold_list
    del args.fold_list
    cfg, explicit = resolve(args, TrainConfig())
    if not cfg.out:
        raise ConfigError("--out is required: the folder that receives fold-K/ runs, cv.json and cv.md")
    check_output_dir(cfg.out, "--out")
    run_cv(cfg.validate(), explicit, parse_folds(fold_list, cfg.folds), cfg.out)
    return 0


def _run_predict(args: argparse.Namespace) -> int:
    from .evaluate import list_inputs, predict_files

    check_output_dir(args.out, "--out")
    files = list_inputs(args.inputs)
    predictor, cfg, _ = _prepare_inference(args)
    bar = _progress(0, "slice")
    try:
        predict_files(files, predictor, cfg, args.out, args.tile, args.batch_size, args.tta, args.labels,
                      args.overlay, log=bar.write if bar else print, progress=bar.update if bar else None)
    finally:
        if bar:
            bar.close()
    return 0


def _run_train(args: argparse.Namespace, defaults: TrainConfig) -> int:
    from .engine import train

    cfg, explicit = resolve(args, defaults)
    train(cfg, explicit)
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from .data import write_synthetic_dataset
    from .engine import check_new_run_dir, train

    cfg, explicit = resolve(args, DEMO_PRESET)
    if not cfg.resume:
        out = Path(cfg.out) if cfg.out else Path("runs") / (cfg.name or "demo")
        check_new_run_dir(out)  # before the synthetic images are written into it
        if not cfg.data:
            print(f"writing {DEMO_IMAGES} synthetic EM-like images to {out / 'synthetic'}", flush=True)
            write_synthetic_dataset(out / "synthetic", DEMO_IMAGES, DEMO_SIZE, seed=cfg.seed)
            cfg = cfg.replace(data=str(out / "synthetic"))
        cfg = cfg.replace(out=str(out))
    train(cfg, explicit)
    return 0


def _run_export(args: argparse.Namespace) -> int:
    from .export import export_model

    check_output_file(args.out, "--out")
    path = export_model(args.checkpoint, args.format, args.out, args.opset)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


def _run_bench(args: argparse.Namespace) -> int:
    from .bench import BenchConfig, format_table, run_bench, write_json

    check_device(args.device)
    if args.json:
        check_output_file(args.json, "--json")
    try:
        sweep = [int(x) for x in args.micro_sweep.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--micro-sweep must be comma-separated integers, got {args.micro_sweep!r}") from None
    cfg = BenchConfig(device=args.device, base_width=args.base_width, depth=args.depth, tile_size=args.tile_size,
                      batch_size=args.batch_size, precision=args.precision, threads=args.threads,
                      repeats=args.repeats, warmup=args.warmup, infer_batch=args.infer_batch, micro_sweep=sweep,
                      baseline=not args.no_baseline, memory=not args.no_memory, compile=args.compile)
    result = run_bench(cfg, log=lambda text: print(text, file=sys.stderr, flush=True))
    print(format_table(result))
    if args.json:
        write_json(result, args.json)
    return 0


def _run_fetch(args: argparse.Namespace) -> int:
    from .fetch import fetch_isbi2012

    check_output_dir(args.dir, "DIR")
    if not 0 < args.timeout <= 1e6:  # NaN too; an infinite or huge one overflows the socket's timeout
        raise ConfigError(f"--timeout must be a positive number of seconds (at most 1e6), got {args.timeout}")
    fetch_isbi2012(args.dir, urls=args.url, timeout=args.timeout)
    return 0


def _run_score(args: argparse.Namespace) -> int:
    from .evaluate import score_files, write_json_atomic

    indices = None
    if args.indices is not None:
        try:
            indices = [int(i) for i in args.indices.split(",")]
        except ValueError:
            raise ConfigError(f"--indices must be comma-separated slice numbers, got {args.indices!r}") from None
    if args.json:
        check_output_file(args.json, "--json")
    report = score_files(args.labels, args.probs, indices, args.polarity)
    for key in ("pixel_error", "v_rand", "v_info"):
        print(f"{key:12s} {report[key]:.4f}  (threshold {report['thresholds'][key]:g})")
    if args.json:
        write_json_atomic(report, args.json)
    return 0


COMMANDS = {"demo": _run_demo, "cv": _run_cv, "evaluate": _run_evaluate, "predict": _run_predict,
            "export": _run_export, "bench": _run_bench, "fetch": _run_fetch,
            "score": _run_score}


class _StderrHandler(logging.Handler):
    """Notices (``biounet: ...``) to whatever sys.stderr is at the time."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"biounet: {record.getMessage()}", file=sys.stderr, flush=True)


def _setup_notices() -> None:
    from .data.readers import LOG, forget_notices

    forget_notices()  # each command says its notices once
    # tifffile logs each damaged tag or page of a broken file on stderr before raising; the reader's
    # DataError already says the file is damaged, in one line
    logging.getLogger("tifffile").setLevel(logging.CRITICAL)
    if not any(isinstance(h, _StderrHandler) for h in LOG.handlers):
        LOG.addHandler(_StderrHandler())
        LOG.setLevel(logging.INFO)
        LOG.propagate = False


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_notices()
    try:
        if args.command == "train":
            return _run_train(args, TrainConfig())
        return COMMANDS[args.command](args)
    except (BiounetError, OSError, MemoryError) as exc:
        if os.environ.get("BIOUNET_DEBUG"):
            raise
        print(f"biounet {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code if isinstance(exc, BiounetError) else FAILURE
    except KeyboardInterrupt:
        return 130


def _one_line(exc: BaseException) -> str:
    """The user's message for an expected error, on one line."""
    if isinstance(exc, BiounetError):
        text = str(exc)
    elif isinstance(exc, OSError):
        text = describe_os_error(exc)
    else:  # MemoryError
        text = ("out of memory: the input or the chosen sizes need more memory than this machine has; use "
                "smaller images, a smaller --batch-size or --tile, or a machine with more memory")
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
