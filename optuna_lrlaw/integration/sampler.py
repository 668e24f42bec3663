"""LRLawSampler: the learning rate from a scaling law's prediction, sharpened trial by trial.

The sampler holds a belief about log eta*, the optimal log learning rate of the study's
scale. The belief starts as the law's prediction for that scale (or, with no law, a wide
prior over the user's range) and is updated after every finished trial by
`estimate_optimum`: completed trials are points on the loss-versus-LR curve, diverged ones
censor it from above (see `trial_outcome`). Acquisition:

1. The study's first trial takes the law's median, the one-shot LR that won on held-out
   real rungs (docs/method.md), or with ``first_trial="recommend"`` the LR of lowest
   expected loss under the pooled loss shape (`LRPrediction.recommend`).
2. Later trials take a Thompson draw: a sample of log eta* from the current posterior,
   restricted to the user's bounds. A draw is where the optimum *might* be, so the search
   concentrates as the posterior does and stays wide while it is unsure: what a search
   for the best run wants.
3. With ``acquisition="spread"`` (what the ladder's rungs use), the second and third
   trials go to one point on each side of the belief's centre instead
   (`science.acquisition.spread_design`), far enough apart that the loss differences clear
   the noise at the curvature the law expects at this scale (a factor 2 without a law;
   1.5 posterior sds while the belief is wide), before Thompson draws take over: a sweep
   whose job is to measure the optimum and the curve's width for the law, instead of
   clustering where a confident prior points.
4. Trials still running elsewhere (other threads or workers) count as taken points, and
   Thompson draws avoid them: of a few draws the first one farther than a quarter
   posterior sd from every running trial's LR is taken (else the one farthest from them),
   so parallel workers spread out instead of piling onto one LR.

Every other parameter goes to an inner sampler (TPE by default), relative and independent.
"""

from __future__ import annotations

import math
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from optuna_lrlaw.integration.study import (
    DIVERGED_ATTR,
    FINISHED_STATES,
    NOISE_ATTR,
    ended_diverged,
    study_scale,
    trial_outcome,
)
from optuna_lrlaw.science._arguments import check_instance, check_int
from optuna_lrlaw.science.acquisition import spread_design
from optuna_lrlaw.science.law import LRLaw
from optuna_lrlaw.science.observations import blown_up
from optuna_lrlaw.science.optimum import OptimumEstimate, estimate_optimum
from optuna_lrlaw.science.scale import Scale

#: System attribute where the belief at sampling time is recorded on each trial.
BELIEF_ATTR = "lrlaw:belief"
#: Thompson draws tried against running trials, and the spacing asked of them in posterior sds.
_N_DRAWS = 8
_SPACING_SDS = 0.25
#: With ``acquisition="spread"``, a draw waits for other workers' runs until the sweep has this
#: many runs with a loss (`LRLawSampler._after_the_first_runs`), looking every `_POLL_SECONDS`,
#: for at most `_MAX_WAIT_SECONDS`.
_INFORMED_RUNS = 3
_POLL_SECONDS = 1.0
_MAX_WAIT_SECONDS = 3600.0
#: Without a law, the prior sd is this fraction of the user's log range: nearly flat over it.
_NO_LAW_SD_FRACTION = 0.5
#: A linear LR range starting at 0 is searched in log space from this fraction of its top.
_LINEAR_FLOOR = 1e-6
#: Resolution of the posterior grid: ample for sampling, and cheap enough to refit per trial.
_GRID_SIZE = 151


@runtime_checkable
class LawSource(Protocol):
    """Anything that hands a study the law it should use, e.g. `LawFromStorage`."""

    def law_for(self, study: optuna.Study) -> LRLaw | None: ...


@dataclass(frozen=True)
class Belief:
    """The sampler's belief about the optimal learning rate of one study.

    Attributes:
        posterior: the posterior of log eta* from the prior and the study's finished trials.
        prior: the normal prior on log eta* it started from, ``(mean, sd)`` (a law's
            prediction, a normal mixture, enters through its mean and sd).
        prior_lr: where the search starts: the law's recommended LR (or its median, with
            ``first_trial="median"``; the centre of the range without a law).
        from_law: True when the prior came from a law, False when it is the wide default.
        curvature: the law's relative loss curvature at this scale (`LossShape.curvature`),
            which sets how far apart the spread trials go; None without a law.
        n_finished: finished trials behind it.
        best_lr, best_loss: the best completed trial so far (None before one).
    """

    posterior: OptimumEstimate
    prior: tuple[float, float]
    prior_lr: float
    from_law: bool
    curvature: float | None
    n_finished: int
    best_lr: float | None
    best_loss: float | None

    @property
    def lr(self) -> float:
        """Posterior median of eta*."""
        return self.posterior.lr

    def interval(self, q: float = 0.9) -> tuple[float, float]:
        """Equal-tailed posterior interval of eta*."""
        return self.posterior.interval(q)

    @property
    def expected_regret(self) -> float | None:
        """Posterior mean of the relative loss excess of the best trial's LR over eta*
        (None until a parabola could be fitted)."""
        return None if self.best_lr is None else self.posterior.expected_regret(self.best_lr)

    def as_dict(self) -> dict[str, float | int | bool | None]:
        lo, hi = self.interval(0.9)
        return {
            "lr": self.lr,
            "log_lr_mean": self.posterior.log_lr_mean,
            "log_lr_sd": self.posterior.log_lr_sd,
            "interval_90": [lo, hi],
            "from_law": self.from_law,
            "n_finished": self.n_finished,
            "expected_regret": self.expected_regret,
        }


class LRLawSampler(BaseSampler):
    """An Optuna sampler that searches the learning rate around a scaling law's prediction.

    Args:
        law: a fitted `LRLaw`, a live `LawSource` such as `LawFromStorage` (refitted as
            other studies finish trials), or None to search the user's range with no law.
        scale: the scale of the study's runs; by default read from the study's user
            attributes (`set_study_scale`), so one sampler serves a whole ladder.
        lr_param: the name of the learning-rate parameter.
        inner: the sampler for every other parameter (default `optuna.samplers.TPESampler`).
        seed: makes the LR draws reproducible (they depend only on the seed, the trial
            number and the finished trials, not on thread or worker timing).
        first_trial: ``"median"`` (default) starts at the law's posterior median,
            ``"recommend"`` at its LR of lowest expected loss (the hedged LR).
        acquisition: ``"thompson"`` (default) samples the trials after the first from the
            belief, for the best run; ``"spread"`` first places one trial on each side of
            the belief's centre, for a sweep that measures the optimum (the ladder's rungs),
            and a draw after those waits for the runs other workers are training until
            three have a loss: concurrent workers then bracket the optimum as one does.

    Example:
        >>> import math, optuna
        >>> from optuna_lrlaw import LRLawSampler
        >>> def objective(trial):
        ...     lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
        ...     wd = trial.suggest_float("weight_decay", 0.0, 0.3)
        ...     return 2.0 + 0.02 * (math.log(lr / 3e-3)) ** 2 + 0.1 * wd
        >>> study = optuna.create_study(sampler=LRLawSampler(seed=0))
        >>> study.optimize(objective, n_trials=12)
        >>> 1e-3 < study.best_params["lr"] < 1e-2
        True
    """

    def __init__(
        self,
        law: LRLaw | LawSource | None = None,
        *,
        scale: Scale | None = None,
        lr_param: str = "lr",
        inner: BaseSampler | None = None,
        seed: int | None = None,
        first_trial: Literal["recommend", "median"] = "median",
        acquisition: Literal["spread", "thompson"] = "thompson",
    ) -> None:
        if first_trial not in ("recommend", "median"):
            raise ValueError(f"first_trial must be 'recommend' or 'median', got {first_trial!r}")
        if acquisition not in ("spread", "thompson"):
            raise ValueError(f"acquisition must be 'spread' or 'thompson', got {acquisition!r}")
        if law is not None and not isinstance(law, (LRLaw, LawSource)):
            raise TypeError(f"law must be an LRLaw, a LawSource or None, got {type(law).__name__}")
        if scale is not None and not isinstance(scale, Scale):
            raise TypeError(f"scale must be a Scale, got {type(scale).__name__}")
        if not isinstance(lr_param, str) or not lr_param:
            raise ValueError(f"lr_param must be the name of the LR parameter, got {lr_param!r}")
        if inner is not None:
            check_instance(inner, BaseSampler, "inner", what="an Optuna sampler (optuna.samplers.BaseSampler) or None")
        if seed is not None:
            check_int(seed, "seed", minimum=0)
        self._law = law
        self._first_trial = first_trial
        self._acquisition = acquisition
        self._scale = scale
        self.lr_param = lr_param
        self._inner = inner if inner is not None else optuna.samplers.TPESampler(seed=seed)
        self._seed = int(np.random.SeedSequence(seed).generate_state(1)[0])
        self._lock = threading.Lock()
        self._beliefs: dict[tuple, Belief] = {}
        self._trial_outcomes: dict[int, tuple[float, float, bool] | None] = {}
        self._warned: set[tuple] = set()

    # -- Optuna's sampler contract ---------------------------------------------------------

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        _check_single_objective(study)
        space = self._inner.infer_relative_search_space(study, trial)
        return {name: dist for name, dist in space.items() if name != self.lr_param}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        _check_single_objective(study)
        space = {name: dist for name, dist in search_space.items() if name != self.lr_param}
        params = self._inner.sample_relative(study, trial, space) if space else {}
        # Whatever the inner sampler leaves out of the given space is drawn one by one.
        for name, distribution in search_space.items():
            if name not in params:
                params[name] = self.sample_independent(study, trial, name, distribution)
        return params

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        _check_single_objective(study)
        if param_name != self.lr_param:
            return self._inner.sample_independent(study, trial, param_name, param_distribution)
        bounds = _log_bounds(param_name, param_distribution)
        belief = self.belief(study, bounds=bounds)
        self._warn_if_prior_outside(study, belief, bounds)
        log_lr = self._acquire(study, trial, belief, bounds)
        study._storage.set_trial_system_attr(trial._trial_id, BELIEF_ATTR, belief.as_dict())
        return _to_distribution(math.exp(log_lr), param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._inner.before_trial(study, trial)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: list[float] | None
    ) -> None:
        self._inner.after_trial(study, trial, state, values)
        if trial.params and self.lr_param not in trial.params:
            self._warn_once(
                study,
                "no lr_param",
                f"LRLawSampler looks for the learning rate under {self.lr_param!r}, but trial {trial.number} of "
                f"study {study.study_name!r} suggested only {sorted(trial.params)}: the law is not used. "
                f"Pass lr_param= the name your objective suggests the learning rate under",
            )
        elif state == TrialState.FAIL and self.lr_param in trial.params and not ended_diverged(trial):
            self._warn_once(
                study,
                "failed",
                f"trial {trial.number} of study {study.study_name!r} (lr {trial.params[self.lr_param]:.3g}) failed, "
                "so it says nothing about the optimal LR and is left out, as is every later failure. If its run "
                "diverged, return float('inf'): Optuna fails a trial whose objective returns NaN, as it does one "
                f"that crashed. Or set trial.set_user_attr({DIVERGED_ATTR!r}, True) before the trial ends",
            )

    def _warn_once(self, study: optuna.Study, kind: str, message: str) -> None:
        key = (study._study_id, kind)
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        warnings.warn(message, stacklevel=3)

    def reseed_rng(self) -> None:
        self._seed = int(np.random.SeedSequence().generate_state(1)[0])
        self._inner.reseed_rng()

    # -- The belief --------------------------------------------------------------------------

    def belief(self, study: optuna.Study, *, bounds: tuple[float, float] | None = None) -> Belief:
        """The current belief about eta* for ``study``: prior, finished trials, posterior.

        ``bounds`` (log LR) only shapes the wide default prior used when there is no law;
        by default they are read from the study's trials.
        """
        _check_minimizes(study)
        finished = study._storage.get_all_trials(study._study_id, deepcopy=False, states=FINISHED_STATES)
        law = self._law.law_for(study) if isinstance(self._law, LawSource) else self._law
        if bounds is None:
            bounds = self._bounds_from_trials(finished)
        key = (study._study_id, len(finished), id(law), bounds if law is None else None)
        with self._lock:
            cached = self._beliefs.get(key)
        if cached is not None:
            return cached
        prior, prior_lr, curvature = self._prior(study, law, bounds)
        outcomes = [o for o in self._outcomes(finished) if o is not None]
        lrs, losses, flagged = np.array(outcomes, dtype=float).reshape(-1, 3).T
        diverged = flagged > 0
        diverged |= blown_up(lrs, np.where(diverged, np.nan, losses))
        # The noise the objective stated on its runs (`NOISE_ATTR`), if it did.
        stated = [t.user_attrs[NOISE_ATTR] for t in finished if NOISE_ATTR in t.user_attrs]
        noise = float(np.median(stated)) if stated else None
        posterior = estimate_optimum(lrs, losses, diverged=diverged, prior=prior, noise=noise, grid_size=_GRID_SIZE)
        ok = ~diverged
        best = int(np.argmin(np.where(ok, losses, np.inf))) if ok.any() else None
        belief = Belief(
            posterior=posterior,
            prior=prior,
            prior_lr=prior_lr,
            from_law=law is not None,
            curvature=curvature,
            n_finished=len(finished),
            best_lr=None if best is None else float(lrs[best]),
            best_loss=None if best is None else float(losses[best]),
        )
        with self._lock:
            self._beliefs = {k: v for k, v in self._beliefs.items() if k[0] != study._study_id}
            self._beliefs[key] = belief
        return belief

    def _outcomes(self, finished: list[FrozenTrial]) -> list[tuple[float, float, bool] | None]:
        # A finished trial never changes: read each one once.
        with self._lock:
            known = self._trial_outcomes
            for trial in finished:
                if trial._trial_id not in known:
                    known[trial._trial_id] = trial_outcome(trial, self.lr_param)
            return [known[trial._trial_id] for trial in finished]

    def _prior(
        self, study: optuna.Study, law: LRLaw | None, bounds: tuple[float, float] | None
    ) -> tuple[tuple[float, float], float, float | None]:
        """The prior (mean, sd) of log eta*, the first trial's LR, and the law's curvature."""
        if law is not None:
            scale = self._scale or study_scale(study)
            if scale is None:
                raise ValueError(
                    f"LRLawSampler needs the scale of study {study.study_name!r} to use its law: "
                    "pass scale= or call set_study_scale(study, scale)"
                )
            prediction = law.predict(scale)
            start = prediction.recommend().lr if self._first_trial == "recommend" else prediction.lr
            return (prediction.log_lr_mean, prediction.log_lr_sd), start, prediction.shape.curvature
        if bounds is None:
            raise ValueError("with no law and no trial yet, the LR bounds are needed for the default prior")
        lo, hi = bounds
        return (0.5 * (lo + hi), max(_NO_LAW_SD_FRACTION * (hi - lo), 1e-3)), math.exp(0.5 * (lo + hi)), None

    def _bounds_from_trials(self, trials: list[FrozenTrial]) -> tuple[float, float] | None:
        for trial in reversed(trials):
            if self.lr_param in trial.distributions:
                return _log_bounds(self.lr_param, trial.distributions[self.lr_param])
        return None

    # -- Acquisition ---------------------------------------------------------------------------

    def _acquire(self, study: optuna.Study, trial: FrozenTrial, belief: Belief, bounds: tuple[float, float]) -> float:
        lo, hi = bounds
        others = [t for t in study._storage.get_all_trials(study._study_id, deepcopy=False) if t.number != trial.number]
        if all(t.number > trial.number for t in others):
            return float(np.clip(math.log(belief.prior_lr), lo, hi))
        taken = [t.params[self.lr_param] for t in others if self.lr_param in t.params]
        if self._acquisition == "spread":
            # Earlier trials of other workers that are choosing their LR right now would take
            # the design's next points: take the one after them.
            choosing = sum(
                t.number < trial.number and t.state == TrialState.RUNNING and self.lr_param not in t.params
                for t in others
            )
            posterior, design = belief.posterior, list(np.log(taken))
            for _ in range(choosing + 1):
                proposal = spread_design(
                    math.log(posterior.lr), posterior.log_lr_sd, np.array(design), bounds, curvature=belief.curvature
                )
                if proposal is None:
                    break
                design.append(proposal)
            if proposal is not None:
                return proposal
            belief = self._after_the_first_runs(study, trial, belief, bounds)
        rng = np.random.default_rng([self._seed, trial.number])
        draws = belief.posterior.sample_log_lr(rng, _N_DRAWS, bounds=bounds)
        running = np.log(
            [t.params[self.lr_param] for t in others if t.state == TrialState.RUNNING and self.lr_param in t.params]
        )
        if running.size == 0:
            return float(draws[0])
        distance = np.abs(draws[:, None] - running[None, :]).min(axis=1)
        spaced = np.flatnonzero(distance > _SPACING_SDS * belief.posterior.log_lr_sd)
        return float(draws[spaced[0]] if spaced.size else draws[np.argmax(distance)])

    def _after_the_first_runs(
        self, study: optuna.Study, trial: FrozenTrial, belief: Belief, bounds: tuple[float, float]
    ) -> Belief:
        """The belief once the sweep has `_INFORMED_RUNS` runs with a loss, waiting for the
        runs other workers are training while it has fewer. A draw from a belief no run has
        informed is blind: concurrent workers would spend the sweep's budget on such draws
        before it brackets its optimum, where one worker draws after seeing its spread runs.
        A worker alone (nothing else running) does not wait, nor does anyone past
        `_MAX_WAIT_SECONDS`."""
        deadline = time.monotonic() + _MAX_WAIT_SECONDS
        while belief.posterior.n_runs - belief.posterior.n_diverged < _INFORMED_RUNS and time.monotonic() < deadline:
            running = study._storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.RUNNING,))
            if not any(t.number != trial.number and self.lr_param in t.params for t in running):
                break
            time.sleep(_POLL_SECONDS)
            belief = self.belief(study, bounds=bounds)
        return belief

    def _warn_if_prior_outside(self, study: optuna.Study, belief: Belief, bounds: tuple[float, float]) -> None:
        if not belief.from_law:
            return
        mean, sd = belief.prior
        inside = math.erf((bounds[1] - mean) / (sd * math.sqrt(2))) - math.erf((bounds[0] - mean) / (sd * math.sqrt(2)))
        key = (study._study_id, bounds)
        with self._lock:
            if inside / 2 >= 0.5 or key in self._warned:
                return
            self._warned.add(key)
        lo, hi = (math.exp(b) for b in bounds)
        warnings.warn(
            f"the law puts most of its belief about the optimal LR ({math.exp(mean):.3g}) outside "
            f"the range [{lo:.3g}, {hi:.3g}] of {self.lr_param!r}: widen the range",
            stacklevel=4,
        )


def _check_single_objective(study: optuna.Study) -> None:
    if len(study.directions) != 1:
        raise ValueError("LRLawSampler searches for the lowest loss: multi-objective studies are not supported")


def _check_minimizes(study: optuna.Study) -> None:
    _check_single_objective(study)
    if study.direction != optuna.study.StudyDirection.MINIMIZE:
        raise ValueError("LRLawSampler searches for the lowest loss: create the study with direction='minimize'")


def _log_bounds(name: str, distribution: BaseDistribution) -> tuple[float, float]:
    if not isinstance(distribution, FloatDistribution):
        raise ValueError(f"{name!r} is the learning rate: suggest it with trial.suggest_float")
    if distribution.high <= 0:
        raise ValueError(f"{name!r} is the learning rate: its range must include positive values")
    low = distribution.low if distribution.low > 0 else _LINEAR_FLOOR * distribution.high
    return math.log(low), math.log(distribution.high)


def _to_distribution(lr: float, distribution: FloatDistribution) -> float:
    if distribution.step is not None:
        steps = round((lr - distribution.low) / distribution.step)
        lr = distribution.low + steps * distribution.step
    return float(min(max(lr, distribution.low), distribution.high))
