"""The ``biounet`` command: parses options once and hands one config to the library.

One module per command group (training.py: train, demo, cv; inference.py: evaluate, predict;
export.py, bench.py, fetch.py, score.py, models.py), each with ``add_arguments`` and ``run``; the flags
that several commands take are defined once in options.py (their vocabulary, and the old spellings kept
for a release); the values of the command line are checked in checks.py (the training options:
``TrainConfig.validate``).

Subcommands: ``train``, ``demo`` (train on embedded synthetic EM-like data), ``cv``,
``evaluate``, ``predict``, ``export``, ``bench``, ``fetch``, ``score``, ``models``.
User errors print one line and exit 2 (a bad command line: flags, values, configuration files) or 1
(a failure while running: missing or damaged files, data, checkpoints); set BIOUNET_DEBUG=1 to see the
traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable

from biounet import __version__
from biounet.cli import bench, export, fetch, inference, models, score, serve, training
from biounet.cli.options import note_deprecated
from biounet.core.errors import FAILURE, BiounetError, describe_os_error

# One module per command group, each with ``add_arguments(sub)`` and ``run(args)``, in the order
# of ``biounet --help``.
GROUPS = (training, inference, export, bench, fetch, score, models, serve)
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    name: group.run for group in GROUPS for name in group.COMMANDS
}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the problem and where to read more, no usage dump."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="biounet", description="U-Net for 2D biomedical image segmentation (Ronneberger et al. 2015)."
    )
    parser.add_argument("--version", action="version", version=f"biounet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add_arguments(sub)
    for command in sub._name_parser_map.values():
        note_deprecated(command)
    return parser


class _StderrHandler(logging.Handler):
    """Notices (``biounet: ...``) to whatever sys.stderr is at the time."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"biounet: {record.getMessage()}", file=sys.stderr, flush=True)


def _setup_notices() -> None:
    from biounet.data.readers import LOG, forget_notices

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
        text = (
            "out of memory: the input or the chosen sizes need more memory than this machine has; use "
            "smaller images, a smaller --tile-batch or --tile (inference) or --batch-size (training), or a "
            "machine with more memory"
        )
    return " ".join(text.split())
