"""`python -m supervisor` runs the same CLI as `actorsup`."""

import sys

from .app._cli import main

sys.exit(main())
