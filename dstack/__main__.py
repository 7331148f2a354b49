"""``python -m dstack`` is the `dstack` command."""

from dstack.cli.main import main

main()
