"""A rung's figures and note inside its study, where optuna-dashboard shows them."""

from __future__ import annotations

import importlib

import optuna

from optuna_lrlaw.integration.sampler import BELIEF_ATTR
from optuna_lrlaw.integration.study import name_the_metric, observations_from_study
from optuna_lrlaw.science.law import LRLaw
from optuna_lrlaw.science.prediction import LRPrediction
from optuna_lrlaw.science.scale import Scale
from optuna_lrlaw.visualization._law import plot_law
from optuna_lrlaw.visualization._study import plot_belief, plot_sweep, sweep_optimum

#: The ids the figures are saved under: saving again replaces them.
SWEEP_FIGURE, BELIEF_FIGURE, LAW_FIGURE = "lrlaw-sweep", "lrlaw-belief", "lrlaw-law"


def publish_to_dashboard(
    study: optuna.Study, prior: LRPrediction | None = None, *, law: LRLaw | None = None, target: Scale | None = None
) -> bool:
    """Name the study's objective (`METRIC_NAME`), and save its sweep and belief figures
    (`plot_sweep`, `plot_belief`) and a markdown note (the law's prior, the sweep's
    posterior, the recommended LR, the search factor) into the study for optuna-dashboard.
    With the ``law`` of every rung (a ladder's top rung, at its end), also the law's figure
    (`plot_law`, through the rungs to ``target``) and, in the note, its answer for ``target``:
    the predicted LR, its 90% interval, the one-shot LR and its risk.
    Returns False, writing nothing, when optuna-dashboard or plotly is not installed
    (``pip install 'optuna-lrlaw[dashboard]'``).

    Example:
        >>> publish_to_dashboard(optuna.load_study(study_name="ladder/w32-d2-D245760", storage=url))  # doctest: +SKIP
    """
    try:
        dashboard = importlib.import_module("optuna_dashboard")
        importlib.import_module("plotly.graph_objects")
    except ImportError:
        return False
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return False
    name_the_metric(study)
    dashboard.save_plotly_graph_object(study, plot_sweep(study), graph_object_id=SWEEP_FIGURE)
    if any(BELIEF_ATTR in t.system_attrs for t in complete):
        dashboard.save_plotly_graph_object(study, plot_belief(study), graph_object_id=BELIEF_FIGURE)
    note = _note(study, prior)
    if law is not None:
        dashboard.save_plotly_graph_object(study, plot_law(law, target), graph_object_id=LAW_FIGURE)
        note += _answer(law, target)
    dashboard.save_note(study, note)
    return True


def _answer(law: LRLaw, target: Scale | None) -> str:
    """The note's part for the model the ladder prepares for."""
    lines = ["", "## The law of every rung", ""]
    if target is None:
        return "\n".join([*lines, "No target stored with this ladder: the law's figure shows the rungs alone.", ""])
    prediction = law.predict(target)
    lo, hi = prediction.interval(0.9)
    one_shot = prediction.assess(prediction.lr)
    lines += [
        f"- **Target**: N = {target.params:.3g} parameters, D = {target.tokens:.3g} tokens",
        f"- **Optimal peak LR**: {prediction.lr:.3g}, 90% interval {lo:.3g} to {hi:.3g}",
        f"- **One-shot LR** (the law's median): {one_shot.lr:.3g}: {one_shot}",
    ]
    return "\n".join(lines) + "\n"


def _note(study: optuna.Study, prior: LRPrediction | None) -> str:
    estimate = sweep_optimum(observations_from_study(study))
    lines = [f"## {study.study_name}", ""]
    if prior is None:
        lines.append("- **Prior**: none (the first rung searches from a wide prior).")
    else:
        p_lo, p_hi = prior.interval(0.9)
        lines += [
            f"- **Prior** (the law of the rungs below): lr* {prior.lr:.3g}, 90% interval {p_lo:.3g} to "
            f"{p_hi:.3g}, search factor x{prior.search_factor(0.9):.2f}",
            f"- **Recommended LR** (lowest expected loss under the prior): {prior.recommend().lr:.3g}",
        ]
    if estimate is None:
        lines.append("- **Posterior**: too few finite runs to locate the optimum yet.")
    else:
        lo, hi = estimate.interval(0.9)
        bound = "" if estimate.bracketed else f" (not bracketed: the optimum may lie {estimate.beyond} the sweep)"
        lines.append(
            f"- **Posterior** from {estimate.n_runs} runs ({estimate.n_diverged} diverged): lr* {estimate.lr:.3g}, "
            f"90% interval {lo:.3g} to {hi:.3g}{bound}"
        )
    return "\n".join(lines) + "\n"
