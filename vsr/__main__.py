"""``python -m vsr``: the command line (see ``vsr.cli``)."""

import sys

from vsr.cli import main

if __name__ == "__main__":
    sys.exit(main())
