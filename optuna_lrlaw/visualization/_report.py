"""One HTML page for a climbed ladder: its table and its figures, readable offline."""

from __future__ import annotations

import html
import math

import optuna

from optuna_lrlaw.integration.sampler import BELIEF_ATTR
from optuna_lrlaw.science.scale import Scale
from optuna_lrlaw.visualization._law import plot_law
from optuna_lrlaw.visualization._study import plot_belief, plot_sweep

#: The ladder table's columns in the report: (heading, how a value is shown).
_COLUMNS = {
    "rung": ("rung", str),
    "params": ("parameters", "{:.3g}".format),
    "tokens": ("tokens", "{:.3g}".format),
    "prior_lr": ("law's prediction", "{:.3g}".format),
    "trials": ("trials", str),
    "best_lr": ("best LR", "{:.3g}".format),
    "best_loss": ("best loss", "{:.4f}".format),
    "lr_star": ("optimum found", "{:.3g}".format),
    "lr_lo": ("optimum, 5%", "{:.3g}".format),
    "lr_hi": ("optimum, 95%", "{:.3g}".format),
    "flops": ("FLOPs", "{:.3g}".format),
    "wall_seconds": ("wall time (s)", "{:.0f}".format),
}
_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    ".answer{font-size:17px;background:#f6f3ea;border-left:4px solid #c77a12;padding:.6em 1em}"
)


def ladder_report(storage: str | optuna.storages.BaseStorage, name: str = "ladder", target: Scale | None = None) -> str:
    """A self-contained HTML page for the ladder ``name`` in ``storage``. It leads with the
    answer: the LR predicted for the model the ladder prepares for (``target``, else the one
    stored with the ladder), its interval, the one-shot LR and what a run at it risks; then
    the law through the rungs to that model, the rungs' table, and every rung's sweep and
    sampler belief. plotly.js is inlined once, so the page renders with no network.

    Raises:
        ValueError: when ``storage`` holds no such ladder, or none of its trials has finished.

    Example:
        >>> Path("report.html").write_text(ladder_report("sqlite:///optuna-lrlaw.db"))  # doctest: +SKIP
    """
    from optuna_lrlaw.ladder.run import load_ladder

    result, studies = load_ladder(storage, name)
    if not any(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) for study in studies):
        raise ValueError(f"ladder {name!r} has no finished trial yet: nothing to report (climb it first)")
    target_name = None
    if target is None and result.target is not None:
        target_name, target = result.target
    figures = []  # (heading, figure), the law's first
    if result.law is not None:
        heading = "The law, through the rungs" + (" to the target" if target is not None else "")
        figures.append((heading, plot_law(result.law, target)))
    for study in studies:
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if complete:
            figures.append((f"{study.study_name}: the sweep", plot_sweep(study)))
        if any(BELIEF_ATTR in t.system_attrs for t in complete):
            figures.append((f"{study.study_name}: the sampler's belief", plot_belief(study)))
    title = f"Scale-up ladder \u201c{html.escape(name)}\u201d"
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>optuna-lrlaw: {title}</title>",
        f"<style>{_STYLE}</style></head><body><h1>{title}</h1>",
        _answer(result.law, target, target_name),
    ]
    table = ["<h2>The rungs</h2>", _table(result.rungs), "<p>LR intervals are 90%.</p>"]
    if result.law is None:
        parts += table
    for k, (heading, figure) in enumerate(figures):
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        parts.append(figure.to_html(full_html=False, include_plotlyjs=k == 0))  # plotly.js once
        if k == 0 and result.law is not None:
            parts += table  # right after the law
    parts.append("</body></html>")
    return "\n".join(parts)


def _answer(law, target: Scale | None, target_name: str | None) -> str:
    """The paragraph a reader came for: the LR to train the target at, and its risk."""
    if law is None:
        return "<p class='answer'>No law yet: no rung's sweep brackets its optimum. Add trials or rungs.</p>"
    if target is None:
        return (
            "<p class='answer'>No target stored with this ladder: give one "
            "(<code>--target params=...,tokens=...</code>) to see the LR predicted for it.</p>"
        )
    prediction = law.predict(target)
    lo, hi = prediction.interval(0.9)
    one_shot, hedged = prediction.assess(prediction.lr), prediction.recommend()
    what = html.escape(target_name or "the target")
    return (
        f"<div class='answer'><p>For {what} (N = {target.params:.3g} parameters, D = {target.tokens:.3g} tokens): "
        f"optimal peak LR <b>{prediction.lr:.3g}</b>, 90% interval {lo:.3g} to {hi:.3g}.</p>"
        f"<p><b>One-shot LR (the law's median): {one_shot.lr:.3g}</b>: {html.escape(str(one_shot))}.</p>"
        f"<p>The hedged LR of lowest expected loss under the pooled loss shape, {hedged.lr:.3g}, did not "
        "beat the median on held-out real rungs (docs/method.md).</p></div>"
    )


def _table(rungs) -> str:
    header = "".join(f"<th>{html.escape(heading)}</th>" for heading, _ in _COLUMNS.values())
    rows = []
    for _, row in rungs.iterrows():
        cells = []
        for column, (_, show) in _COLUMNS.items():
            value = row[column]
            missing = isinstance(value, float) and math.isnan(value)
            cells.append(f"<td>{'-' if missing else html.escape(show(value))}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{header}</tr>{''.join(rows)}</table>"
