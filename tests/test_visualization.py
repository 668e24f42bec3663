"""Figures: each takes what it draws (a law, a study, a comparison) and returns a plotly Figure."""

import math
import sys

import numpy as np
import optuna
import pandas as pd
import pytest
from test_law import law_runs

from optuna_lrlaw import LRLawSampler, Scale, fit_law, set_study_scale
from optuna_lrlaw.integration.study import DIVERGED_ATTR
from optuna_lrlaw.ladder import Comparison
from optuna_lrlaw.science.truth_curve import fit_truth_curve
from optuna_lrlaw.visualization import plot_belief, plot_law, plot_search_costs, plot_sweep

pytest.importorskip("plotly")


def names(fig):
    return [trace.name for trace in fig.data]


def test_the_law_figure_shows_every_sweep_and_a_band_that_widens_to_the_target():
    law = fit_law(law_runs())
    target = Scale(1e9, 1e11)
    fig = plot_law(law, target=target)
    assert "sweep optimum (90% interval)" in names(fig) and "law: median" in names(fig)
    optima = next(t for t in fig.data if t.name == "sweep optimum (90% interval)")
    assert len(optima.x) == int(law.optima["bracketed"].sum()) == 6
    band = {t.name: t for t in fig.data if t.name in ("law: 90% predictive interval", None)}
    lo = np.asarray(band["law: 90% predictive interval"].y)
    hi = np.asarray(next(t for t in fig.data if t.name is None).y)
    assert hi[-1] / lo[-1] > hi[0] / lo[0]  # extrapolating widens the band
    (star,) = [t for t in fig.data if (t.name or "").startswith("target")]
    prediction = law.predict(target)
    assert star.x[0] == 1e9 and star.y[0] == pytest.approx(prediction.lr)  # the median, the one-shot LR
    lo, hi = prediction.interval(0.9)
    assert star.y[0] - star.error_y.arrayminus[0] == pytest.approx(lo) and star.y[0] + star.error_y.array[
        0
    ] == pytest.approx(hi)
    # One band from the smallest sweep to the target: it starts at the sweeps, not at the largest.
    band = next(t for t in fig.data if t.name == "law: 90% predictive interval")
    assert min(band.x) == pytest.approx(law.optima["params"].min()) and max(band.x) == pytest.approx(1e9)
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.title.text == "optimal peak learning rate"
    assert len(plot_law(law).data) == len(fig.data) - 1  # no target: the band spans the sweeps


def sweep_study(diverge_top=True):
    study = optuna.create_study()
    set_study_scale(study, Scale(1e7, 1e9))
    for lr in np.geomspace(1e-3, 3e-2, 7):
        diverged = diverge_top and lr > 2e-2
        loss = 5.5 if diverged else 2.5 + 0.05 * math.log(lr / 5e-3) ** 2
        study.add_trial(
            optuna.trial.create_trial(
                params={"lr": float(lr)},
                distributions={"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)},
                value=loss,
                user_attrs={DIVERGED_ATTR: diverged},
            )
        )
    return study


def test_the_sweep_figure_marks_diverged_runs_and_the_optimum():
    fig = plot_sweep(sweep_study())
    assert names(fig) == ["run (final loss)", "diverged run (drawn at the top)", "parabola fitted near the minimum"]
    assert len(fig.data[0].x) == 6 and len(fig.data[1].x) == 1
    assert max(fig.data[1].y) == max(fig.data[0].y)  # a diverged run does not stretch the axis
    parabola = fig.data[2]
    assert min(parabola.y) == pytest.approx(2.5, abs=0.01)
    assert fig.layout.shapes[1].x0 == pytest.approx(5e-3, rel=0.1)  # the posterior median's line
    assert "eta*" in fig.layout.title.text


def test_the_belief_figure_follows_the_sampler_trial_by_trial():
    law = fit_law(law_runs())
    study = optuna.create_study(sampler=LRLawSampler(law, scale=Scale(2.5e7, 4e9), seed=0))
    study.optimize(lambda t: 2.5 + 0.05 * math.log(t.suggest_float("lr", 1e-4, 1e-1, log=True) / 2e-3) ** 2, 5)
    fig = plot_belief(study)
    trials = next(t for t in fig.data if t.name == "trial's LR")
    assert list(trials.x) == [0, 1, 2, 3, 4]
    assert list(trials.y) == pytest.approx([t.params["lr"] for t in study.trials])
    median = next(t for t in fig.data if t.name == "belief: median of eta*")
    assert median.y[0] == pytest.approx(law.predict(Scale(2.5e7, 4e9)).lr, rel=0.01)  # the prior, on a grid
    with pytest.raises(ValueError, match="no trial sampled by LRLawSampler"):
        plot_belief(sweep_study())


def test_the_search_cost_figure_draws_strategies_and_replayed_searches():
    grid = {"lr": [1e-3, 1e-3, 3e-3, 3e-3, 1e-2, 1e-2], "seed": [0, 1] * 3, "loss": [2.1, 2.1, 2, 2, 2.2, 2.2]}
    truth = fit_truth_curve(pd.DataFrame(grid))
    strategies = pd.DataFrame(
        {
            "strategy": ["law ladder (sp)", "TPE, 4 trials (replayed)"],
            "flops": [1e12, 4e12],
            "regret": [0.004, 0.01],
            "regret_se": [0.001, 0.002],
            "scored_by": ["truth curve", "replay mean"],
        }
    )
    replays = pd.DataFrame(
        {"sampler": "TPE", "trials": [1, 2], "flops": [1e12, 2e12], "regret": [0.03, 0.02], "regret_se": [0.01, 0.01]}
    )
    comparison = Comparison(strategies, replays, pd.DataFrame(), {"sp": truth}, pd.DataFrame())
    fig = plot_search_costs(comparison)
    assert names(fig) == ["TPE (replayed, by trials)", "law ladder (sp)"]
    assert fig.data[1].y[0] == pytest.approx(0.4) and fig.data[1].error_y.array[0] == pytest.approx(0.1)
    assert fig.layout.xaxis.type == "log"


def test_without_plotly_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "plotly", None)
    monkeypatch.setitem(sys.modules, "plotly.graph_objects", None)
    with pytest.raises(ImportError, match=r"optuna-lrlaw\[plots\]"):
        plot_law(fit_law(law_runs()))


def test_a_sweep_too_small_to_locate_the_optimum_is_still_drawn():
    study = optuna.create_study()
    set_study_scale(study, Scale(1e7, 1e9))
    for lr, loss in ((1e-3, 2.6), (3e-3, 2.5)):
        study.add_trial(
            optuna.trial.create_trial(
                params={"lr": lr}, distributions={"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1)}, value=loss
            )
        )
    fig = plot_sweep(study)
    assert "too few finite runs" in fig.layout.title.text and len(fig.data[0].x) == 2


def test_the_cli_publishes_each_finished_rung_to_optuna_dashboard():
    # The ladder announces a finished rung; the CLI, not the ladder, puts it in the dashboard.
    dashboard = pytest.importorskip("optuna_dashboard")
    from optuna_dashboard._custom_plot_data import get_plotly_graph_objects
    from rich.console import Console

    from optuna_lrlaw.cli.ladder import ProgressEvents

    study = sweep_study()
    with ProgressEvents(Console(quiet=True), 1) as events:
        events.rung_finished(0, None, study, None)
    figures = get_plotly_graph_objects(study._storage.get_study_system_attrs(study._study_id))
    assert "lrlaw-sweep" in figures  # no sampler's belief in this study: no belief figure
    assert "**Prior**: none" in dashboard.get_note(study)
