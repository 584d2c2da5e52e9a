"""Write docs/cli.md: the `--help` text of `biounet` and of every subcommand, from the parser.

Run `python docs/gen_cli.py` after changing an option; tests/test_docs.py fails while
docs/cli.md differs from what this script writes. The help is wrapped at a fixed width
(COLUMNS=100), so the file does not depend on the terminal it was generated in.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

WIDTH = "100"
OUT = Path(__file__).resolve().parent / "cli.md"

HEADER = """\
# The `biounet` command line

Generated from the parser (`biounet.cli.build_parser()`) by `python docs/gen_cli.py`; do not edit
by hand: `tests/test_docs.py` fails when this file and the parser disagree. Wrapped at 100
columns by Python {python}'s argparse. Exit statuses: 0 done, 2 a bad command line (flags, option
values, configuration files), 1 a failure while running (files, data, checkpoints); one line says
what went wrong, and `BIOUNET_DEBUG=1` shows the traceback instead.
"""


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def render() -> str:
    """The whole of docs/cli.md, as a string."""
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH  # argparse wraps at the terminal width it reads from here
    try:
        from biounet.cli import build_parser

        parser = build_parser()
        python = f"{sys.version_info[0]}.{sys.version_info[1]}"
        parts = [HEADER.format(python=python), "## biounet\n", "```text\n" + parser.format_help().rstrip() + "\n```\n"]
        for name, sub in _subparsers(parser).items():
            parts.append(f"## biounet {name}\n")
            parts.append("```text\n" + sub.format_help().rstrip() + "\n```\n")
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old
    return "\n".join(parts)


def main() -> int:
    text = render()
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT} ({text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    sys.exit(main())
