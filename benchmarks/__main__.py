"""``python -m benchmarks``: the whole benchmark suite (see :mod:`benchmarks.run_all`)."""

import sys

from benchmarks.run_all import main

sys.exit(main())
