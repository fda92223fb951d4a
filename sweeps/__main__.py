"""Run the `sweep` command as a module: `python -m sweeps run --help`."""

import sys

from sweeps.cli import main

sys.exit(main())
