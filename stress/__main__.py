"""``python -m stress``: see ``stress/README.md``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
