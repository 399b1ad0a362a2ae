"""``python3 -m mini_buildd``: run the daemon from a checkout."""

import sys

from mini_buildd.cli.daemon import main

sys.exit(main())
