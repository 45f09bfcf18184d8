"""``python -m handgrad.cli``: the ``handgrad`` command."""

from handgrad.cli import main

main()
