"""The ``macp`` command."""

from __future__ import annotations

import typer

import macp

__all__ = ["app", "main"]

app = typer.Typer(
    name="macp",
    help="Multi-Agent Control Protocol: run supervised agents on one host or many.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Multi-Agent Control Protocol: run supervised agents on one host or many."""


@app.command()
def version() -> None:
    """Print the macp version."""
    typer.echo(macp.__version__)


def main() -> None:
    """Entry point of the ``macp`` console script."""
    app()
