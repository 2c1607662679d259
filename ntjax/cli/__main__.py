"""``python -m ntjax.cli``: the ``ntjax`` command."""

import sys

from ntjax.cli import main

sys.exit(main())
