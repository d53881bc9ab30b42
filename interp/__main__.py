"""``python -m interp COMMAND ...``: the same as the ``interp`` console script."""

from interp.cli.main import entry

entry()
