"""`python -m vaeprior.fast` is the `vaeprior` command."""

import sys

from vaeprior.fast.cli import main

sys.exit(main())
