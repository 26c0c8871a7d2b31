"""Entry point: `python3 dkron.py ...` from a checkout, `__main__` inside dkron.pyz."""

import sys

from dkron_pkg.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
