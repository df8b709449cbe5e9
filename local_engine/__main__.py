"""`python -m local_engine ...`: see cli.py."""

import sys

from .cli import main

sys.exit(main(sys.argv[1:]))
