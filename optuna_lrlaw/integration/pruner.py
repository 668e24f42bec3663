"""LRLawPruner: stop LR-search trials that have diverged or can no longer win.

Two rules, each safe for a learning-rate search in its own way:

1. **Divergence** (`divergence`): a loss that is NaN or infinite, clearly above its first
   reported value, or ``spike_factor`` times its lowest value so far. Safe because such
   runs do not recover to a competitive final loss under a decaying schedule, and the
   sampler reads the pruned trial as a censored run ("the optimum lies below this LR"), so
   pruning loses no information the search uses.
2. **Hopeless** (`probability_to_beat`): the probability that the trial's *final* loss
   beats the best final loss so far, predicted from finished trials' losses at the same
   step and at the end *and their learning rates*, is below ``min_probability``. The LR
   term matters: under decaying schedules a high LR looks better early and worse at the
   end, so ranking by the raw intermediate loss (as `MedianPruner` does) can prune the
   eventual winner. Safe because the prediction is a Student-t predictive with its own
   residual scatter: it prunes only when the finished trials agree the trial cannot win,
   and never before ``min_finished`` trials have finished or before ``warmup_fraction`` of
   the run.

The rules read trial values as losses, so they act on studies that minimize; in any
study a non-finite intermediate value is pruned. Anything neither rule prunes goes to an
optional ``inner`` pruner.
"""

from __future__ import annotations

import math

import optuna
from optuna.pruners import BasePruner
from optuna.trial import FrozenTrial, TrialState

from optuna_lrlaw.science._arguments import check_instance, check_int, check_real
from optuna_lrlaw.science.training_curve import divergence, probability_to_beat

#: System attribute where the pruner records why it stopped a trial.
PRUNE_REASON_ATTR = "lrlaw:prune_reason"


class LRLawPruner(BasePruner):
    """Prunes diverged trials at once and hopeless ones once the evidence says so.

    Args:
        lr_param: the name of the learning-rate parameter.
        spike_factor: a loss above this multiple of the trial's lowest loss is a divergence.
        min_probability: prune when P(final loss beats the best so far) falls below this.
        min_finished: completed trials (reporting the same step) needed before rule 2 acts.
        warmup_fraction: rule 2 waits until the trial has reached this fraction of the
            steps the completed trials ran for (their median), and stops judging at their
            last step, where pruning would save nothing and lose a finished run.
        inner: a pruner consulted when neither rule prunes.

    Example:
        >>> import optuna
        >>> from optuna_lrlaw import LRLawPruner, LRLawSampler
        >>> study = optuna.create_study(sampler=LRLawSampler(), pruner=LRLawPruner())
    """

    def __init__(
        self,
        *,
        lr_param: str = "lr",
        spike_factor: float = 1.5,
        min_probability: float = 0.01,
        min_finished: int = 5,
        warmup_fraction: float = 0.25,
        inner: BasePruner | None = None,
    ) -> None:
        check_instance(lr_param, str, "lr_param", what="the name of the LR parameter")
        if inner is not None:
            check_instance(inner, BasePruner, "inner", what="an Optuna pruner (optuna.pruners.BasePruner) or None")
        self.lr_param = lr_param
        self.spike_factor = check_real(spike_factor, "spike_factor", above=1.0)
        self.min_probability = check_real(min_probability, "min_probability", at_least=0.0, below=1.0)
        # Rule 2's regression has 3 coefficients: 5 finished trials leave it 2 residuals.
        self.min_finished = check_int(min_finished, "min_finished", minimum=5)
        self.warmup_fraction = check_real(warmup_fraction, "warmup_fraction", at_least=0.0, at_most=1.0)
        self._inner = inner

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        reason = self.reason(study, trial)
        if reason is not None:
            study._storage.set_trial_system_attr(trial._trial_id, PRUNE_REASON_ATTR, reason)
            return True
        return self._inner.prune(study, trial) if self._inner is not None else False

    def reason(self, study: optuna.Study, trial: FrozenTrial) -> str | None:
        """Why ``trial`` should be pruned now, or None when neither rule says so."""
        values = trial.intermediate_values
        if not values:
            return None
        steps = sorted(values)
        curve = [values[s] for s in steps]
        if not math.isfinite(curve[-1]):
            return "diverged: the loss is not finite"
        if len(study.directions) != 1 or study.direction != optuna.study.StudyDirection.MINIMIZE:
            return None  # the rules read the values as losses
        diverged = divergence(curve, spike_factor=self.spike_factor)
        if diverged is not None:
            return f"diverged: {diverged}"
        if self.lr_param not in trial.params:
            return None
        return self._hopeless(study, trial, steps[-1], curve[-1])

    def _hopeless(self, study: optuna.Study, trial: FrozenTrial, step: int, now: float) -> str | None:
        completed = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if step in t.intermediate_values and self.lr_param in t.params and math.isfinite(t.value)
        ]
        if len(completed) < self.min_finished:
            return None
        last_steps = sorted(max(t.intermediate_values) for t in completed)
        full_length = last_steps[len(last_steps) // 2]
        if not self.warmup_fraction * full_length <= step < full_length:
            return None  # too early to judge, or too late to save anything
        probability = probability_to_beat(
            min(t.value for t in completed),
            now=now,
            lr=trial.params[self.lr_param],
            finished_now=[t.intermediate_values[step] for t in completed],
            finished_final=[t.value for t in completed],
            finished_lrs=[t.params[self.lr_param] for t in completed],
        )
        if probability is None or probability >= self.min_probability:
            return None
        return f"hopeless: P(final loss beats the best) = {probability:.2g} at step {step}"
