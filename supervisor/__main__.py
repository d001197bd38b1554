"""`python -m supervisor` runs the same CLI as `actorsup`."""

import sys

from ._cli import main

sys.exit(main())
