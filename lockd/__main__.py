"""`python -m lockd …` runs the `lockd` command."""

import sys

from lockd.entrypoint import main

sys.exit(main())
