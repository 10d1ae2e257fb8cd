"""`python -m colorize`: the `colorize` command, also as torchrun and accelerate launch start it (`-m colorize`)."""

import sys

from .cli import main

sys.exit(main())
