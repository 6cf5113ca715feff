"""Entry point: ``python -m bench [--reps N] [--quick] [--scenarios a,b]``."""

import sys

from bench.harness import main

sys.exit(main())
