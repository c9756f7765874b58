"""``python -m sims.heldout``: see :mod:`sims.heldout.cli`."""

import sys

from sims.heldout.cli import main

sys.exit(main())
