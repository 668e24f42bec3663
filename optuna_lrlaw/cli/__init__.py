"""The ``optuna-lrlaw`` command line."""

from __future__ import annotations

import errno
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
    """Entry point, never a traceback: bad input gives one line on stderr and exit code 2; a
    fault of the machine or the database (`named_fault`) one line naming it and the remedy,
    and exit code 1."""
    try:
        app()
    except Exception as error:
        fault = named_fault(error)
        if fault is not None:
            print(f"optuna-lrlaw: error: {fault}", file=sys.stderr)
            sys.exit(1)
        if isinstance(error, (ValueError, OSError, ImportError)):
            print(f"optuna-lrlaw: error: {error}", file=sys.stderr)
            sys.exit(2)
        raise


#: What to do after a fault: everything finished is stored, and a rerun resumes from there.
_RESUME = "then run the same command again: it resumes where this one stopped"


#: How databases say their disk is full: SQLite, PostgreSQL (errno 28's text), MySQL/MariaDB.
_DISK_FULL = ("database or disk is full", "no space left on device", "the table is full")


def named_fault(error: BaseException) -> str | None:
    """One line naming a fault of the machine or the database behind ``error`` (or an error it
    was raised from), with its remedy; None for anything else. Optuna records the trial a
    fault interrupted as failed where the storage still answers, and a retry reruns it."""
    chain = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    # The deepest cause first: Optuna wraps a database's own words in a generic message.
    causes = [(cause, _first_line(cause), {kind.__name__ for kind in type(cause).__mro__}) for cause in chain[::-1]]
    for cause, text, _ in causes:
        if (isinstance(cause, OSError) and cause.errno == errno.ENOSPC) or any(w in text.lower() for w in _DISK_FULL):
            where = f" ({cause.filename})" if getattr(cause, "filename", None) else ""
            return f"no space left on the disk{where}: free some, or move --storage and --checkpoint-dir; {_RESUME}"
    for _, text, names in causes:
        if "OutOfMemoryError" in names or "can't allocate memory" in text or "out of memory" in text.lower():
            return (
                f"out of memory while training ({text[:120]}): lower --batch-size, --seq-len, --widths or --depth; "
                + _RESUME
            )
    for _, text, names in causes:
        if names & {"OperationalError", "InterfaceError", "StorageInternalError"} or "database is locked" in text:
            from optuna_lrlaw.integration.study import hide_passwords

            return f"the database stopped answering ({hide_passwords(text)[:160]}): check that it runs; {_RESUME}"
    return None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
