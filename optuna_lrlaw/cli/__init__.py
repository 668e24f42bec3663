"""The ``optuna-lrlaw`` command line."""

from __future__ import annotations

import sys

import typer

from optuna_lrlaw.cli import data
from optuna_lrlaw.cli.compare import compare
from optuna_lrlaw.cli.fit import fit
from optuna_lrlaw.cli.ladder import ladder
from optuna_lrlaw.cli.report import report

app = typer.Typer(
    name="optuna-lrlaw",
    help="Find the optimal learning rate at a new scale from a law fitted on smaller runs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: flags without a "<bool>" metavar
)
app.command()(fit)
app.command()(ladder)
app.command()(compare)
app.command()(report)
app.add_typer(data.app, name="data")


def main() -> None:
    """Entry point: bad input gives one line on stderr and exit code 2, never a traceback."""
    try:
        app()
    except (ValueError, OSError, ImportError) as error:
        print(f"optuna-lrlaw: error: {error}", file=sys.stderr)
        sys.exit(2)
