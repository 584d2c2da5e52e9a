"""``biounet train``, ``demo`` and ``cv``: every training option is a :class:`TrainConfig` field."""

from __future__ import annotations

import argparse
from pathlib import Path

from biounet.cli.checks import check_training_paths
from biounet.cli.options import RUNTIME_FIELDS, add_config_arguments, deprecated, resolve, runtime_options
from biounet.core.config import TrainConfig
from biounet.core.errors import ConfigError
from biounet.io.fileio import check_output_dir

COMMANDS = ("train", "demo", "cv")
# The embedded demo: a small U-Net (same architecture, width 16) on synthetic EM-like images,
# sized to finish in a couple of minutes on two CPU cores.
DEMO_PRESET = TrainConfig(
    fold="1",
    base_width=16,
    tile_size=252,
    batch_size=4,
    steps=100,
    lr=1e-3,
    log_every=10,
    checkpoint_every=50,
    keep_checkpoints=3,
    name="demo",
)
DEMO_IMAGES, DEMO_SIZE = 12, 256


def _train_parser(
    sub: argparse._SubParsersAction, name: str, defaults: TrainConfig, help_text: str, description: str
) -> argparse.ArgumentParser:
    p = sub.add_parser(name, parents=[runtime_options(training=True)], help=help_text, description=description)
    add_config_arguments(p, defaults, skip=RUNTIME_FIELDS)
    return p


def add_arguments(sub: argparse._SubParsersAction) -> None:
    _train_parser(
        sub,
        "train",
        TrainConfig(),
        "train a U-Net",
        "Train a U-Net on the ISBI 2012 data, a folder of image/mask pairs, or an image volume and its "
        "label volume (--data IMAGES --masks LABELS: Zarr, OME-Zarr, HDF5 or TIFF, read slice by slice). "
        "Options come from the defaults below, then --config FILE, then the flags given.",
    )
    _train_parser(
        sub,
        "demo",
        DEMO_PRESET,
        "train a small U-Net on synthetic EM-like images (offline)",
        "Generate synthetic EM-like images with exact membrane labels into OUT/synthetic and "
        "train a small U-Net on them; takes a few minutes on 2 CPU cores. Every train option "
        "applies.",
    )
    cv = sub.add_parser(
        "cv",
        parents=[runtime_options(training=True)],
        help="cross-validation: train and evaluate the folds in turn",
        description="Train and evaluate the folds in turn (each in OUT/fold-K, resumable), "
        "then write OUT/cv.json and OUT/cv.md. Every train option applies.",
    )
    # the number of folds is the config key `folds` (default 5): cv's old --folds was the list, and keeps
    # that meaning for one release
    add_config_arguments(cv, TrainConfig(), skip=("fold", "folds", *RUNTIME_FIELDS))
    cv.add_argument(
        "--fold",
        dest="fold_list",
        default="0,1,2,3,4",
        metavar="LIST",
        help="comma-separated folds to run (default: 0,1,2,3,4; the number of folds is the "
        "config key `folds`, default 5)",
    )
    deprecated(
        cv,
        "--folds",
        "--fold",
        dest="fold_list",
        hint=" (the folds to run; the number of folds is the config key `folds`)",
        metavar="LIST",
    )
    cv.add_argument(
        "--labels",
        default=None,
        metavar="METHODS",
        help="also score the instances of each comma-separated METHOD (watershed, multicut, gasp, objects; with "
        "--affinities mws12 also mws, multicut-aff, gasp-aff) with its parameters chosen on the other folds' "
        "held-out slices: OUT/cv-labels-METHOD.json, .md and -worst.png, and OUT/cv-labels.md comparing them "
        "with the thresholded baseline",
    )


def run(args: argparse.Namespace) -> int:
    return {"train": _run_train, "demo": _run_demo, "cv": _run_cv}[args.command](args)


def _run_train(args: argparse.Namespace) -> int:
    from biounet.train.engine import train

    cfg, explicit = resolve(args, TrainConfig())
    check_training_paths(cfg)
    train(cfg, explicit)
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from biounet.data import write_synthetic_dataset
    from biounet.train.engine import train
    from biounet.train.runsetup import check_new_run_dir

    cfg, explicit = resolve(args, DEMO_PRESET)
    check_training_paths(cfg)
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


def _run_cv(args: argparse.Namespace) -> int:
    from biounet.instances.methods import parse_methods
    from biounet.train.crossval import parse_folds, run_cv
    from biounet.train.engine import init_network

    fold_list, labels = args.fold_list, args.labels
    del args.fold_list, args.labels
    cfg, explicit = resolve(args, TrainConfig())
    check_training_paths(cfg)
    cfg = init_network(cfg, explicit)  # before the data is read and the methods checked: every fold's network
    if not cfg.out:
        raise ConfigError("--out is required: the folder that receives fold-K/ runs, cv.json and cv.md")
    check_output_dir(cfg.out, "--out")
    folds = parse_folds(fold_list, cfg.folds)
    methods = parse_methods(labels) if labels is not None else None
    if methods and (len(folds) < 2 or cfg.classes != 2):
        raise ConfigError(
            "cv --labels chooses each fold's parameters on the other folds' cells: it needs at least 2 folds "
            f"(got {len(folds)}) and a 2-class model (got {cfg.classes}); run more folds, or drop --labels"
        )
    run_cv(cfg.validate(), explicit, folds, cfg.out, labels=methods)
    return 0
