"""``biounet fetch``: download a public dataset and verify it."""

from __future__ import annotations

import argparse

from biounet.cli.checks import check_timeout, check_url
from biounet.io.fileio import check_output_dir

COMMANDS = ("fetch",)


def add_arguments(sub: argparse._SubParsersAction) -> None:
    fetch = sub.add_parser(
        "fetch",
        help="download a dataset and verify it",
        description="Download a public dataset and verify the SHA-256 of its pixels.",
    )
    fetch.add_argument("dataset", choices=["isbi2012"], help="dataset name")
    fetch.add_argument("dir", help="folder to write the files into")
    fetch.add_argument(
        "--url",
        action="append",
        default=None,
        metavar="BASE_URL",
        help="base URL that holds the three files (repeatable; tried in order; default: the known public locations)",
    )
    fetch.add_argument("--timeout", type=float, default=60.0, help="seconds per connection attempt (default: 60)")


def run(args: argparse.Namespace) -> int:
    from biounet.data.fetch import fetch_isbi2012

    check_output_dir(args.dir, "DIR")
    urls = [check_url(url) for url in args.url] if args.url else None
    fetch_isbi2012(args.dir, urls=urls, timeout=check_timeout(args.timeout))
    return 0
