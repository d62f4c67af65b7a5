"""`python -m integration.cli`: the `tierup` command."""

import sys

from integration.cli import main

sys.exit(main())
