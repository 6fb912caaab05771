"""``python -m models.evaluate``."""

import sys

from models.evaluate.cli import main

if __name__ == "__main__":
    sys.exit(main())
