"""The ``biounet`` command: parses options once and hands one config to the library.

Subcommands: ``train``, ``demo`` (train on embedded synthetic EM-like data), ``fetch``.
User errors (bad options, missing files) print one line and exit 2; set BIOUNET_DEBUG=1 to see
the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import __version__
from .config import TrainConfig, add_config_arguments, resolve
from .errors import BiounetError

# The embedded demo: a small U-Net (same architecture, width 16) on synthetic EM-like images,
# sized to finish in a couple of minutes on two CPU cores.
DEMO_PRESET = TrainConfig(
    fold="1", base_width=16, tile_size=252, batch_size=4, steps=150, lr=1e-3, log_every=10,
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
    fetch = sub.add_parser("fetch", help="download a dataset and verify it",
                           description="Download a public dataset and verify the SHA-256 of its pixels.")
    fetch.add_argument("dataset", choices=["isbi2012"], help="dataset name")
    fetch.add_argument("dir", help="folder to write the files into")
    fetch.add_argument("--url", action="append", default=None, metavar="BASE_URL",
                       help="base URL that holds the three files (repeatable; tried in order; "
                            "default: the known public locations)")
    fetch.add_argument("--timeout", type=float, default=60.0, help="seconds per connection attempt (default: 60)")
    return parser


def _run_train(args: argparse.Namespace, defaults: TrainConfig) -> int:
    from .engine import train

    cfg, explicit = resolve(args, defaults)
    train(cfg, explicit)
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from .data import write_synthetic_dataset
    from .engine import train

    cfg, explicit = resolve(args, DEMO_PRESET)
    if not cfg.resume:
        out = Path(cfg.out) if cfg.out else Path("runs") / (cfg.name or "demo")
        if (out / "last.pt").exists():
            raise BiounetError(f"{out} already holds a demo run; pass --out to choose another folder, "
                               f"or --resume {out} to continue it")
        if not cfg.data:
            print(f"writing {DEMO_IMAGES} synthetic EM-like images to {out / 'synthetic'}", flush=True)
            write_synthetic_dataset(out / "synthetic", DEMO_IMAGES, DEMO_SIZE, seed=cfg.seed)
            cfg = cfg.replace(data=str(out / "synthetic"))
        cfg = cfg.replace(out=str(out))
    train(cfg, explicit)
    return 0


def _run_fetch(args: argparse.Namespace) -> int:
    from .fetch import fetch_isbi2012

    fetch_isbi2012(args.dir, urls=args.url, timeout=args.timeout)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            return _run_train(args, TrainConfig())
        if args.command == "demo":
            return _run_demo(args)
        return _run_fetch(args)
    except (BiounetError, FileNotFoundError) as exc:
        if os.environ.get("BIOUNET_DEBUG"):
            raise
        print(f"biounet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
