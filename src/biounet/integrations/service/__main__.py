"""``python -m biounet.integrations.service [OPTIONS]``: ``biounet serve`` run directly, with the command
line's one-line errors."""

from __future__ import annotations

import argparse
import sys

from biounet.core.errors import BiounetError
from biounet.integrations.service.command import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m biounet.integrations.service")
    add_arguments(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)])
    try:
        return run(args)
    except BiounetError as exc:
        print(f"biounet serve: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # Ctrl-C: uvicorn has stopped the service already
        return 130


if __name__ == "__main__":
    sys.exit(main())
