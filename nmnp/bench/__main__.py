"""``python -m nmnp.bench``: see :mod:`nmnp.bench`."""

import sys

from .cli import main

if __name__ == "__main__":  # importing this module (pydoc, autodoc) must not start the bench
    sys.exit(main())
