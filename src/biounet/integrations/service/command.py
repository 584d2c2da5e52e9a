"""``biounet serve``: a model behind an HTTP API and a web page (FastAPI on uvicorn), on this machine only
unless a token guards it. The command line (src/biounet/cli/serve.py) adds the shared flags and
:func:`add_service_arguments`, and calls :func:`run`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from biounet.core.config import check_device
from biounet.core.errors import ConfigError
from biounet.integrations.service.server import Settings, check_binding
from biounet.integrations.service.work import ServedModel, check_served
from biounet.segment.tiling import MAX_TILE_SIDE

TOKEN_ENV = "BIOUNET_SERVE_TOKEN"  # a token here stays out of the process list, unlike --token


def add_service_arguments(p: argparse.ArgumentParser) -> None:
    """The flags only ``serve`` has (the command line adds the shared ones: --model, --device, --precision,
    --threads, --tile, --tile-batch; src/biounet/cli/serve.py)."""
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    p.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV),
        help=f"require 'Authorization: Bearer TOKEN' on every API call but health (default: ${TOKEN_ENV}; "
        "at least 16 characters; needed for any --host but a loopback address)",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a web origin whose pages may call the API, e.g. https://lab.example.org (repeatable; default: none)",
    )
    p.add_argument("--queue-size", type=int, default=8, help="jobs that may wait; more get 429 (default: 8)")
    p.add_argument("--job-ttl", type=float, default=600.0, help="seconds a finished job is kept (default: 600)")
    p.add_argument("--max-upload-mb", type=float, default=64.0, help="largest upload in MiB (default: 64)")
    p.add_argument(
        "--max-pixels",
        type=int,
        default=2**26,
        help="most pixel values an image may declare: width x height x slices x channels (default: 2**26)",
    )
    p.add_argument("--work-dir", default=None, help="folder for the jobs' files (default: the temporary folder)")


def settings_from(args: argparse.Namespace) -> Settings:
    """The service's settings from the command line, checked (ConfigError names the option)."""
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {args.port}")
    if args.threads < 0:
        raise ConfigError(f"--threads must not be negative, got {args.threads}")
    if args.tile_batch < 1:
        raise ConfigError(f"--tile-batch must be at least 1, got {args.tile_batch}")
    if args.tile is not None and not 1 <= args.tile <= MAX_TILE_SIDE:
        raise ConfigError(
            f"--tile must be between 1 and {MAX_TILE_SIDE} pixels, got {args.tile}; omit it to let biounet choose"
        )
    check_device(args.device)
    settings = Settings(
        token=args.token or None,
        cors_origins=tuple(args.cors_origin),
        queue_size=args.queue_size,
        job_ttl=args.job_ttl,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_values=args.max_pixels,
        work_dir=args.work_dir,
    ).check()
    check_binding(args.host, settings.token)
    return settings


def open_served(args: argparse.Namespace) -> ServedModel:
    """The model of ``--model``, opened as every command opens one (:func:`biounet.models.open_model`)."""
    from biounet.models import open_model

    predictor, cfg, _ = open_model(args.model, args.device, args.precision, args.threads)
    name = str(args.model) if "/" not in str(args.model) else Path(args.model).name  # no server path shown
    check_served(cfg, name)
    return ServedModel(predictor, cfg, name, args.tile, args.tile_batch)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from biounet.integrations.service.app import create_app
    from biounet.segment.inference import describe_predictor

    settings = settings_from(args)  # every option checked before the model loads
    model = open_served(args)
    app = create_app(model, settings)
    where = describe_predictor(model.predictor)
    print(
        f"biounet serve: {model.name} on {where['device']} ({where['precision']}); the page is at /, the API docs "
        f"at /api/v1/docs{'; a token is required' if settings.token else ''}",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", server_header=False)
    return 0
