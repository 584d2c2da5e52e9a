"""The long run of the fuzz harness that the test suite runs briefly (tests/test_fuzz.py); the
machinery lives in tests/support/fuzzing.py. `python tools/fuzz.py --help` lists the options."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.fuzzing import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
