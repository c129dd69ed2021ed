"""``python -m dlsa ...`` runs the ``dlsa`` command (so ``torchrun -m dlsa train ...`` works)."""

import sys

from dlsa.cli import main

if __name__ == "__main__":
    sys.exit(main())
