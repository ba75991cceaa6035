"""`python -m e2e.demo`: see e2e/demo/run.py."""

from __future__ import annotations

import sys

from e2e.demo.run import main

if __name__ == "__main__":
    sys.exit(main())
