"""``python -m macp`` runs the ``macp`` command."""

from macp.cli import main

main()
