"""``python -m stress``: see ``stress/README.md``."""

import sys

from .cli import main

sys.exit(main())
