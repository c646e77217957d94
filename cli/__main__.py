"""``python -m cli``: the same as the ``cluster-eval`` console script."""

import sys

from cli.main import main

sys.exit(main())
