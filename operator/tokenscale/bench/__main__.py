"""`python -m tokenscale.bench ...`, the same as `tokenscale bench ...`."""

import sys

from tokenscale.bench.cli import main

sys.exit(main())
