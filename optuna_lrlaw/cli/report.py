"""``optuna-lrlaw report``: one HTML page, readable offline, for a ladder in a storage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from optuna_lrlaw.science.scale import Scale


def report(
    storage: Annotated[str, typer.Argument(help="Optuna storage URL of the ladder, e.g. sqlite:///optuna-lrlaw.db.")],
    out: Annotated[Path, typer.Option(help="The HTML file to write.")] = Path("report.html"),
    name: Annotated[str, typer.Option(help="The ladder's name (its studies are NAME/RUNG).")] = "ladder",
    target: Annotated[
        str | None, typer.Option(help="A scale to predict, e.g. params=2.5e6,tokens=2.5e7: drawn on the law.")
    ] = None,
) -> None:
    """Write the ladder's table, its law and every rung's sweep and belief into one HTML page
    (plotly.js inlined: it renders with no network)."""
    from optuna_lrlaw.cli.ladder import quiet_optuna
    from optuna_lrlaw.integration.study import sqlite_path
    from optuna_lrlaw.visualization import ladder_report

    quiet_optuna()
    path = sqlite_path(storage)
    if path not in (None, "", ":memory:") and not Path(path).is_file():
        raise ValueError(f"no SQLite database at {path}: the report reads a climbed ladder, it creates nothing")
    page = ladder_report(storage, name, None if target is None else Scale.parse(target))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    print(f"wrote {out} ({len(page) / 1e6:.1f} MB)")
