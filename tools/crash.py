"""The long run of the crash harness that the test suite runs briefly (tests/test_crash.py); the
machinery lives in tests/support/crash.py. `python tools/crash.py --help` lists the options."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.crash import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
