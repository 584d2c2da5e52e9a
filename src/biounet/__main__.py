"""``python -m biounet``: the same as the ``biounet`` command."""

import sys

from biounet.cli import main

sys.exit(main())
