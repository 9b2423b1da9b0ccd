"""``python -m nmnp``: the command line (see :mod:`nmnp.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
