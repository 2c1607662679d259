"""The ``ntjax`` command: ``main`` (in ``ntjax.cli.main``, with the parser and the table of
subcommands), one module per subcommand, ``readers`` for the data files they read.

``ntjax.cli.main`` names the function; its module is reached with
``from ntjax.cli.main import ...``.
"""

from ntjax.cli.main import main

__all__ = ["main"]
