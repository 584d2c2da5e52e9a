"""``biounet serve``: the shared flags (--model, --device, --precision, --threads, --tile, --tile-batch)
from the command line's parent parsers, the service's own from
:func:`biounet.integrations.service.command.add_service_arguments`."""

from __future__ import annotations

import argparse

from biounet.cli.options import EXPORTED_HELP, MODEL_HELP, runtime_options, tile_options

COMMANDS = ("serve",)
DEFAULT_MODEL = "isbi2012-membranes"


def add_arguments(sub: argparse._SubParsersAction) -> None:
    from biounet.integrations.service.command import add_service_arguments

    p = sub.add_parser(
        "serve",
        parents=[runtime_options(training=False, progress=False), tile_options()],
        help="serve a model over HTTP: an API and a web page",
        description="Serve a model on this machine: a versioned HTTP API (/api/v1, docs at /api/v1/docs) and a web "
        "page at / where an image is dropped and its membranes and cells shown. Binds to 127.0.0.1; another "
        "address needs --token. See docs/serve.md.",
    )
    p.add_argument(
        "--model", metavar="REF", default=DEFAULT_MODEL, help=f"{MODEL_HELP}{EXPORTED_HELP} (default: {DEFAULT_MODEL})"
    )
    add_service_arguments(p)


def run(args: argparse.Namespace) -> int:
    from biounet.integrations.service.command import run as serve

    return serve(args)
