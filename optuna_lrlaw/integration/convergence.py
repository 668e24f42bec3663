"""LRLawConvergence: stop the LR search once another trial is not worth its cost.

After each trial the sampler's posterior gives the expected regret of the best LR found
so far: the relative loss excess ``C * E[(log lr_best - log eta*)^2] / L_min`` under the
fitted parabola. No further trial can gain more than that in expectation, so once it is
below what the user will accept the search is done. With one training run costing the
same at every LR of a scale, this is the point where the value of another trial falls
under its cost.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial

from optuna_lrlaw.integration.sampler import LRLawSampler
from optuna_lrlaw.science._arguments import check_instance, check_int, check_real


class LRLawConvergence:
    """An Optuna callback that calls ``study.stop()`` when the LR search has converged.

    Args:
        max_expected_regret: stop when the best trial's expected relative regret (0.001:
            0.1% of the loss) is at most this.
        min_trials: never stop before this many trials have completed without diverging (a
            parabola through three or four runs fits them too well to judge its own error).
        sampler: the `LRLawSampler` whose belief decides; by default the study's sampler.

    Example:
        >>> import math, optuna
        >>> from optuna_lrlaw import LRLawConvergence, LRLawSampler
        >>> study = optuna.create_study(sampler=LRLawSampler(seed=0))
        >>> objective = lambda t: 2.0 + 0.01 * math.log(t.suggest_float("lr", 1e-5, 1e-1, log=True) / 1e-3) ** 2
        >>> study.optimize(objective, n_trials=100, callbacks=[LRLawConvergence()])
        >>> len(study.trials) < 100
        True
    """

    def __init__(self, max_expected_regret: float = 1e-3, *, min_trials: int = 5, sampler: LRLawSampler | None = None):
        self.max_expected_regret = check_real(max_expected_regret, "max_expected_regret", above=0.0)
        self.min_trials = check_int(min_trials, "min_trials", minimum=1)
        if sampler is not None:
            check_instance(sampler, LRLawSampler, "sampler", what="an LRLawSampler or None")
        self._sampler = sampler
        #: The expected regret at which it stopped a study last; None while it has not.
        self.stopped_at: float | None = None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        sampler = self._sampler or study.sampler
        if not isinstance(sampler, LRLawSampler):
            raise TypeError("LRLawConvergence needs an LRLawSampler: pass sampler= or use one in the study")
        belief = sampler.belief(study)
        if belief.posterior.n_runs - belief.posterior.n_diverged < self.min_trials:
            return
        regret = belief.expected_regret
        if regret is not None and regret <= self.max_expected_regret:
            self.stopped_at = regret
            study.stop()
