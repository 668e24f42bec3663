"""One HTML page for a climbed ladder: its table and its figures, readable offline."""

from __future__ import annotations

import html
import math

import optuna

from optuna_lrlaw.integration.sampler import BELIEF_ATTR
from optuna_lrlaw.science.scale import Scale
from optuna_lrlaw.visualization._law import plot_law
from optuna_lrlaw.visualization._study import plot_belief, plot_sweep

#: The ladder table's columns in the report, and how each is shown.
_COLUMNS = {
    "rung": str,
    "params": "{:.3g}".format,
    "tokens": "{:.3g}".format,
    "prior_lr": "{:.3g}".format,
    "trials": str,
    "best_lr": "{:.3g}".format,
    "best_loss": "{:.4f}".format,
    "lr_star": "{:.3g}".format,
    "lr_lo": "{:.3g}".format,
    "lr_hi": "{:.3g}".format,
    "flops": "{:.3g}".format,
    "wall_seconds": "{:.0f}".format,
}
_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
)


def ladder_report(storage: str | optuna.storages.BaseStorage, name: str = "ladder", target: Scale | None = None) -> str:
    """A self-contained HTML page for the ladder ``name`` in ``storage``: each rung's row, the
    law across scales (to ``target`` if given), and every rung's sweep and sampler belief.
    plotly.js is inlined once, so the page renders with no network.

    Example:
        >>> Path("report.html").write_text(ladder_report("sqlite:///optuna-lrlaw.db"))  # doctest: +SKIP
    """
    from optuna_lrlaw.ladder.run import load_ladder

    result, studies = load_ladder(storage, name)
    figures = []
    if result.law is not None:
        figures.append(("The law", plot_law(result.law, target)))
    for study in studies:
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if complete:
            figures.append((f"{study.study_name}: the sweep", plot_sweep(study)))
        if any(BELIEF_ATTR in t.system_attrs for t in complete):
            figures.append((f"{study.study_name}: the sampler's belief", plot_belief(study)))
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Ladder {html.escape(name)}</title>",
        f"<style>{_STYLE}</style></head><body><h1>Ladder {html.escape(name)}</h1>",
        _table(result.rungs),
    ]
    if result.law is None:
        parts.append("<p>No law yet: no rung's sweep brackets its optimum.</p>")
    elif target is not None:
        prediction = result.law.predict(target)
        lo, hi = prediction.interval(0.9)
        parts.append(
            f"<p>At N={target.params:.3g}, D={target.tokens:.3g}: lr* {prediction.lr:.3g} (90% interval "
            f"{lo:.3g} to {hi:.3g}); <b>recommended lr {prediction.recommend().lr:.3g}</b>.</p>"
        )
    for k, (title, figure) in enumerate(figures):
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts.append(figure.to_html(full_html=False, include_plotlyjs=k == 0))
    parts.append("</body></html>")
    return "\n".join(parts)


def _table(rungs) -> str:
    header = "".join(f"<th>{column}</th>" for column in _COLUMNS)
    rows = []
    for _, row in rungs.iterrows():
        cells = []
        for column, show in _COLUMNS.items():
            value = row[column]
            missing = isinstance(value, float) and math.isnan(value)
            cells.append(f"<td>{'-' if missing else html.escape(show(value))}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{header}</tr>{''.join(rows)}</table>"
