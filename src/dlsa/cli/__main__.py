"""``python -m dlsa.cli`` runs the ``dlsa`` command (as ``python -m dlsa`` does)."""

import sys

from dlsa.cli.parser import main

if __name__ == "__main__":
    sys.exit(main())
