"""LRLawPruner and the curve rules behind it."""

import math
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest

from optuna_lrlaw import LRLawPruner, LRLawSampler
from optuna_lrlaw.integration import trial_outcome
from optuna_lrlaw.integration.pruner import PRUNE_REASON_ATTR
from optuna_lrlaw.science.training_curve import divergence, probability_to_beat

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from pruner_benchmark import benchmark  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize(
    "curve, verdict",
    [
        ([5.0, 4.0, 3.5], None),
        ([5.0, 4.0, math.nan], "not finite"),
        ([5.0, 4.0, math.inf], "not finite"),
        ([5.0, 4.0, 5.6], "above its first value"),
        ([5.0, 2.0, 3.1], "lowest value"),
        ([5.0, 5.4], None),  # a too-small LR barely moves: within the 10% margin
        ([], None),
    ],
)
def test_divergence_rules(curve, verdict):
    reason = divergence(curve)
    assert (reason is None) if verdict is None else (verdict in reason)


def test_probability_to_beat_corrects_for_the_learning_rate():
    # Finished runs: a high LR looks worse now but ends better (its loss drops more at the end).
    rng = np.random.default_rng(0)
    lrs = np.geomspace(1e-3, 1e-2, 8)
    x = np.log(lrs / 1e-3)
    now = 3.0 + 0.2 * x + rng.normal(0, 0.02, x.size)
    final = 2.6 - 0.05 * x + 0.5 * (now - 3.0 - 0.2 * x) + rng.normal(0, 0.002, x.size)
    args = {"finished_now": now, "finished_final": final, "finished_lrs": lrs}
    # A high-LR run, worse now than every lower LR: a plausible winner all the same.
    assert probability_to_beat(final.min(), now=now[-1], lr=lrs[-1] * 0.99, **args) > 0.2
    # A low-LR run, better now than every higher LR: hopeless all the same.
    assert probability_to_beat(final.min(), now=now[1], lr=lrs[1] * 1.01, **args) < 0.01
    # Outside the finished LRs, or with too few runs, it abstains.
    assert probability_to_beat(2.5, now=9.0, lr=1e-1, finished_now=now, finished_final=final, finished_lrs=lrs) is None
    assert (
        probability_to_beat(2.5, now=9.0, lr=2e-3, finished_now=now[:4], finished_final=final[:4], finished_lrs=lrs[:4])
        is None
    )


def test_diverging_trials_are_pruned_at_once_and_censor_the_sampler():
    study = optuna.create_study(sampler=LRLawSampler(seed=0), pruner=LRLawPruner())

    def objective(trial):
        lr = trial.suggest_float("lr", 1e-5, 1.0, log=True)
        for step in range(1, 20):
            loss = 5.0 - step * 0.1 if lr < 1e-2 else 5.0 - step * 0.1 + step**2 * 0.05
            trial.report(loss, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return loss

    study.enqueue_trial({"lr": 0.5})
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert max(trial.intermediate_values) < 19
    assert "diverged" in trial.system_attrs[PRUNE_REASON_ATTR]
    assert trial_outcome(trial) == (0.5, pytest.approx(math.nan, nan_ok=True), True)


def test_inner_pruner_is_consulted_and_bad_settings_refused():
    class Always(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return True

    study = optuna.create_study(pruner=LRLawPruner(inner=Always()))
    trial = study.ask()
    trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    trial.report(3.0, 1)
    assert trial.should_prune()
    with pytest.raises(ValueError):
        LRLawPruner(spike_factor=1.0)
    with pytest.raises(ValueError):
        LRLawPruner(min_finished=2)


def test_on_synthetic_searches_the_eventual_winner_is_never_pruned():
    runs = benchmark(seeds=6, trials=24)
    ours = runs[runs["pruner"] == "LRLawPruner"]
    assert not ours["winner_pruned"].any()
    assert (ours["regret"] == 0).all()
    assert ours["steps_fraction"].mean() < 1.0  # it does prune something
