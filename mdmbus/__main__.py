"""``python -m mdmbus``: the ``mdmbus`` command."""

import sys

from mdmbus.cli import main

sys.exit(main())
