"""What choosing the LR of one large run costs: the law's ladder against μTransfer and ordinary search.

A strategy is a way to pick the peak LR of a target model trained once. Each one here
ends in the target at one chosen LR, is charged for every run it trains on the way (FLOPs
as the runs record them, seconds on the device), and is scored by the regret of that LR
against the best loss *of its own parametrization* at the target, measured by a truth
grid there (`science.truth_curve`): the sp and the μP target are different models.

The strategies (``../shared/science.md`` §1 for μP and μTransfer):

1. **ordinary search** at the target: TPE (no pruning), GP and random search over the range
   a user without a law searches (the ladder's own), replayed on the sp truth curve with its
   seed noise over many seeds (`replay`); TPE again inside the law's window (a search that
   was told where to look); and one real TPE search with Optuna's default pruner
   (`MedianPruner`) so its effect shows;
2. **μTransfer**: a grid sweep of the base model (the smallest rung's shape, in μP) at the
   rungs' tokens per parameter, its best LR carried unchanged to the μP target;
3. **μTransfer, horizon matched**: the same sweep with the base model trained on the
   target's tokens (μP transfers across width, not across training horizon);
4. **law ladder (sp)**: `run_ladder` on sp rungs, one run at the law's recommended LR
   (and, as its own row, one at the law's median);
5. **law ladder (μP)**: the same ladder in μP (the law learns the horizon drift μP leaves),
   with the weak prior and with the μP prior (`priors.MUP`: the optimum does not move with
   width at a fixed horizon, so the sweeps only have to teach it the drift with D);
6. **law + LRLawSampler**: the sp law as the sampler's prior, a few trials at the target
   (replayed over many seeds, and run once for real).

A ladder serves every larger model it predicts for: its cost is also reported split over
the targets it serves (``also_serves``). Everything trained is stored in the Optuna
storage under ``{name}/...``, so an interrupted comparison resumes and a rerun trains
nothing new.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from optuna_lrlaw.integration import LRLawSampler, set_study_scale
from optuna_lrlaw.integration.study import DIVERGED_ATTR, RUN_STATES, checked_lr_range, open_storage, trial_lr
from optuna_lrlaw.ladder import _jobs
from optuna_lrlaw.ladder.replay import REGRET_GOALS, replay_search, summarize_replay, trials_to_goal
from optuna_lrlaw.ladder.run import (
    SURPLUS_ATTR,
    LadderEvents,
    LadderResult,
    drain_queue,
    json_records,
    record_rung,
    run_ladder,
    trial_flops,
    trial_seconds,
)
from optuna_lrlaw.ladder.rungs import Rung, default_rungs
from optuna_lrlaw.proxies import concurrency
from optuna_lrlaw.proxies.data import builtin_corpus_for
from optuna_lrlaw.proxies.objective import ProxyObjective
from optuna_lrlaw.proxies.train import resolve_device
from optuna_lrlaw.science import priors
from optuna_lrlaw.science._arguments import check_int
from optuna_lrlaw.science.law import LRLaw, fit_law
from optuna_lrlaw.science.truth_curve import TruthCurve, fit_truth_curve

#: The LR's parameter name in every study of the comparison.
LR_PARAM = "lr"
#: The regret the product promises, and the share of ordinary search's FLOPs it may cost.
GOAL_REGRET = 0.005
GOAL_FLOPS_SHARE = 0.25
#: The replayed TPE search confined to the law's window (the sp truth grid's core).
WINDOW_TPE = "TPE in the law's window"
#: Extra grid LRs the truth may add, one at a time, while its best LR sits at an edge.
_TRUTH_EXTENSIONS = 3


@dataclass(frozen=True)
class ComparisonPlan:
    """What a comparison trains and replays. The defaults are what the issue asks as a minimum.

    Attributes:
        rungs: the ladder (sp); its μP twin is anchored at the smallest rung's shape.
        target: the model whose LR every strategy picks (sp; its μP twin is derived).
        also_serves: further targets the same ladder predicts for; the ladder's cost is
            split over ``1 + len(also_serves)`` targets in the amortised columns.
        ladder_trials: the most trials per rung.
        truth_lrs, truth_span, truth_seeds: the truth grid: LRs log-spaced over a span
            (highest over lowest) centred on the law's prediction, each at these seeds;
            the sp grid also reaches out to ``lr_range`` at twice its step, where ordinary
            search looks.
        proxy_lrs: LRs of μTransfer's grid sweep, log-spaced over ``lr_range``.
        search_trials, replay_seeds: trials and seeds of each replayed search.
        pruned_search_trials: trials of the real TPE search with Optuna's default pruner.
        sampler_trials: trials of `LRLawSampler` at the target.
        lr_range: the LR range the ladder, μTransfer's sweep and ordinary search explore.
        training: `TrainConfig` fields for every run (``eval_batches``, ``schedule``, ...);
            the caller's own (`compare_search_costs`'s ``training``) take precedence.
    """

    rungs: tuple[Rung, ...]
    target: Rung
    also_serves: tuple[Rung, ...] = ()
    ladder_trials: int = 6
    truth_lrs: int = 7
    truth_span: float = 32.0
    truth_seeds: int = 2
    proxy_lrs: int = 12
    search_trials: int = 16
    replay_seeds: int = 100
    pruned_search_trials: int = 8
    sampler_trials: int = 2
    lr_range: tuple[float, float] = (1e-4, 1e-1)
    training: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.rungs) < 2:
            raise ValueError("a comparison needs a ladder of at least 2 rungs")
        top = max(rung.scale().params for rung in self.rungs)
        if self.target.scale().params <= top:
            raise ValueError("the target must be larger than every rung")
        for name in ("truth_lrs", "proxy_lrs"):
            if getattr(self, name) < 3:
                raise ValueError(f"{name} must be at least 3, got {getattr(self, name)}")
        if self.truth_seeds < 2:
            raise ValueError(f"truth_seeds must be at least 2 (their spread is the noise), got {self.truth_seeds}")
        if not self.truth_span > 1:
            raise ValueError(f"truth_span must exceed 1, got {self.truth_span}")
        for name in ("ladder_trials", "search_trials", "replay_seeds", "pruned_search_trials", "sampler_trials"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        checked_lr_range(self.lr_range)

    @property
    def base(self) -> Rung:
        """μTransfer's proxy shape, and the μP anchor of every μP model here: the smallest rung."""
        return min(self.rungs, key=lambda rung: rung.scale().params)

    def in_mup(self, rung: Rung, tokens: int | None = None) -> Rung:
        """``rung`` in μP anchored at the base shape (CompleteP when the depth differs)."""
        base = self.base.model
        kind = "mup" if rung.model.depth == base.depth else "completep"
        model = replace(
            rung.model,
            parametrization=kind,
            base_width=base.width,
            base_depth=base.depth,
            base_heads=base.heads,
        )
        steps = (tokens or rung.tokens) // rung.scale().batch_tokens
        return replace(rung, model=model, tokens=int(steps * rung.scale().batch_tokens))


@dataclass(frozen=True)
class Comparison:
    """What a comparison measured.

    Attributes:
        strategies: one row per strategy ending in one chosen LR at the target (see
            `compare_search_costs`).
        replays: per replayed sampler and trial count: mean regret ± standard error over
            seeds, FLOPs and device seconds.
        trials_to_goal: per replayed sampler and regret goal: the median trials (and FLOPs)
            to reach it, with the share of seeds that did within the budget.
        truth: the truth curve of each parametrization at the target.
        served: the ladder's prediction at each target it serves.
        goal: the product's goal, checked (see `GOAL_REGRET`, `GOAL_FLOPS_SHARE`).
        device: where the runs trained, as they recorded it (``cpu``, or the GPU's name).
    """

    strategies: pd.DataFrame
    replays: pd.DataFrame
    trials_to_goal: pd.DataFrame
    truth: dict[str, TruthCurve]
    served: pd.DataFrame
    goal: dict[str, object] = field(default_factory=dict)
    device: str = "unknown"

    def to_dict(self) -> dict[str, object]:
        return {
            "strategies": json_records(self.strategies),
            "replays": json_records(self.replays),
            "trials_to_goal": json_records(self.trials_to_goal),
            "truth": {name: curve.to_dict() for name, curve in self.truth.items()},
            "served": json_records(self.served),
            "goal": self.goal,
            "device": self.device,
        }


def compare_search_costs(
    plan: ComparisonPlan,
    *,
    storage: str | optuna.storages.BaseStorage = "sqlite:///optuna-lrlaw.db",
    name: str = "ladder",
    device: str = "auto",
    seed: int = 0,
    events: LadderEvents | None = None,
    jobs: int = 1,
    **training,
) -> Comparison:
    """Run every strategy of ``plan`` for its target and tabulate what each cost and found.

    Args:
        plan: rungs, target and budgets (`ComparisonPlan`; presets in `comparison_plan`).
        storage, name: where everything is stored: the sp ladder is ``{name}/RUNG`` (the
            ladder `run_ladder` climbs under that name, reused if climbed), the rest
            ``{name}/mup/RUNG`` and ``{name}/compare/...``.
        device: where runs train (``"auto"``: a GPU when there is one).
        seed: seeds the samplers of the ladders and the real searches.
        events: progress hooks (`LadderEvents`).
        jobs: runs trained at once: the ladders climb with ``jobs`` (`run_ladder`), and the
            runs at fixed LRs (the truth grids, μTransfer's sweep) train in ``jobs``
            processes; the searches at the target stay one run at a time. ``storage`` must
            then be a URL.
        training: further `TrainConfig` fields for every run (``corpus``, ``evals``, ...).

    Returns:
        A `Comparison`. Its ``strategies`` table has one row per strategy: ``strategy``,
        ``parametrization``, ``runs`` (every run it trained), ``target_runs``, ``lr``
        (chosen), ``regret`` and ``regret_se`` (on its parametrization's truth curve;
        for replayed rows the mean over seeds and its standard error),
        ``measured_regret`` and ``measured_se`` (the chosen LR trained for real at the
        truth's seeds; NaN for replayed rows), ``flops``, ``seconds``,
        ``flops_amortised``, ``seconds_amortised`` (the ladder's share split over the
        targets it serves) and ``flops_vs_search`` (FLOPs over TPE's median FLOPs to
        `GOAL_REGRET`).

    Example:
        >>> plan = comparison_plan("cpu")                                          # doctest: +SKIP
        >>> compare_search_costs(plan, storage="sqlite:///compare.db").strategies  # doctest: +SKIP
    """
    training = {**plan.training, **training}
    if training.get("corpus") is None:  # one built-in corpus for every run: the one the target fits
        training["corpus"] = str(builtin_corpus_for(plan.target.tokens).path)
    # The target's objective checks the device, corpus and settings before the storage is
    # created: bad input writes nothing.
    plan.target.objective(plan.lr_range, device=device, **training)
    check_int(jobs, "jobs", minimum=1)
    url = storage if isinstance(storage, str) else None
    storage = open_storage(storage)
    events = events or LadderEvents()
    runner = _Runner(storage, name, plan, device, seed, events, training, url, jobs)
    return runner.compare()


@dataclass
class _Runner:
    """Trains and stores the comparison's runs; each method is one stage, resumed from storage."""

    storage: optuna.storages.BaseStorage
    name: str
    plan: ComparisonPlan
    device: str
    seed: int
    events: LadderEvents
    training: dict
    storage_url: str | None = None
    jobs: int = 1

    def compare(self) -> Comparison:
        plan = self.plan
        ladders = {
            "sp": self._ladder(list(plan.rungs), self.name),
            "mup": self._ladder([plan.in_mup(rung) for rung in plan.rungs], f"{self.name}/mup"),
        }
        targets = {"sp": plan.target, "mup": plan.in_mup(plan.target)}
        windows = {p: self._truth_grid(ladders[p].law.predict(targets[p].scale()).lr) for p in ("sp", "mup")}
        reach = {"sp": plan.lr_range, "mup": None}
        grids = {p: self._truth(p, targets[p], windows[p], reach[p]) for p in ("sp", "mup")}
        truth = {p: curve for p, (curve, _) in grids.items()}
        seconds_per_run = {p: float(np.mean([trial_seconds(t) for t in runs])) for p, (_, runs) in grids.items()}
        flops_per_run = {p: targets[p].model.flops_per_token() * targets[p].tokens for p in truth}

        window = (windows["sp"][0], windows["sp"][-1])
        replays, regrets = self._replays(
            truth["sp"], ladders["sp"].law, window, flops_per_run["sp"], seconds_per_run["sp"]
        )
        to_goal = _trials_to_goal(regrets, flops_per_run["sp"])
        median_flops = to_goal.set_index(["sampler", "goal"])["median_flops"]
        tpe_flops = float(median_flops.loc[("TPE", GOAL_REGRET)])

        rows = [
            *self._law_rows(ladders, targets, truth),
            *self._transfer_rows(targets["mup"], truth["mup"]),
            self._pruned_search_row(targets["sp"], truth["sp"]),
            self._sampler_row(ladders["sp"], targets["sp"], truth["sp"], replays),
            *_replayed_rows(replays, budgets=(4, 8, plan.search_trials)),
        ]
        strategies = pd.DataFrame(rows)
        strategies["flops_vs_search"] = strategies["flops"] / tpe_flops
        served = _served(ladders["sp"], [plan.target, *plan.also_serves])
        devices = {str(t.user_attrs["device"]) for _, runs in grids.values() for t in runs if "device" in t.user_attrs}
        goal = _goal(strategies, tpe_flops)
        goal["window_tpe_flops_to_goal"] = float(median_flops.loc[(WINDOW_TPE, GOAL_REGRET)])
        return Comparison(strategies, replays, to_goal, truth, served, goal, ", ".join(sorted(devices)))

    # -- The ladders ---------------------------------------------------------------------------------

    def _ladder(self, rungs: list[Rung], name: str) -> LadderResult:
        result = run_ladder(
            rungs,
            storage=self.storage if self.jobs == 1 else self.storage_url,
            jobs=self.jobs,
            name=name,
            trials=self.plan.ladder_trials,
            lr_range=self.plan.lr_range,
            device=self.device,
            seed=self.seed,
            events=self.events,
            **self.training,
        )
        if result.law is None:
            raise ValueError(f"ladder {name!r} has no law (no rung's sweep brackets its optimum); add trials or rungs")
        return result

    # -- Real runs at fixed LRs ----------------------------------------------------------------------

    def _train(self, label: str, rung: Rung, lrs: Sequence[float], seed: int = 0) -> dict[float, FrozenTrial]:
        """Train ``rung`` at each of ``lrs`` with training seed ``seed`` (runs already stored are
        reused), in study ``{name}/compare/{label}/{rung.name}/seed{seed}``; the finished trial of
        each LR."""
        low, high = min(min(lrs), self.plan.lr_range[0]), max(max(lrs), self.plan.lr_range[1])
        objective = rung.objective((low, high), lr_param=LR_PARAM, device=self.device, seed=seed, **self.training)
        study = self._study(
            f"{label}/{rung.name}/seed{seed}", rung, objective, optuna.samplers.RandomSampler(seed=self.seed)
        )
        stored = study.get_trials(deepcopy=False, states=(*RUN_STATES, TrialState.WAITING))
        have = {trial_lr(t, LR_PARAM) for t in stored}
        for lr in lrs:
            if lr not in have:
                study.enqueue_trial({LR_PARAM: lr})
                have.add(lr)
        waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        self.events.stage_started(f"{label} (seed {seed})", rung, waiting)
        shown = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}

        def report(study: optuna.Study, trial: FrozenTrial) -> None:
            if not trial.user_attrs.get(SURPLUS_ATTR):
                shown.add(trial.number)
                self.events.trial_finished(-1, rung, trial)

        helpers = max(min(self.jobs, waiting) - 1, 0)
        threads = concurrency.threads_per_job(resolve_device(objective.device), helpers + 1) if helpers else None
        work = {"storage": self.storage_url, "study_name": study.study_name, "objective": objective}
        with (
            _jobs.helpers(helpers, drain_queue, work, threads) if helpers else contextlib.nullcontext(),
            concurrency.torch_threads(threads),
        ):
            drain_queue(self.storage, study.study_name, objective, callbacks=[report])
        runs = [t for t in study.get_trials(deepcopy=False, states=RUN_STATES) if not t.user_attrs.get(SURPLUS_ATTR)]
        for trial in sorted((t for t in runs if t.number not in shown), key=lambda t: t.number):
            self.events.trial_finished(-1, rung, trial)  # the helpers' runs
        finished = {t.params[LR_PARAM]: t for t in runs}
        missing = [f"{lr:.4g}" for lr in lrs if lr not in finished]
        if missing:
            raise RuntimeError(
                f"{study.study_name}: no finished run at lr {', '.join(missing)} (a job failed: see its warning); "
                "rerun to train it again"
            )
        return {lr: finished[lr] for lr in lrs}

    def _study(
        self,
        label: str,
        rung: Rung,
        objective: ProxyObjective,
        sampler: optuna.samplers.BaseSampler,
        pruner: optuna.pruners.BasePruner | None = None,
    ) -> optuna.Study:
        """The study ``{name}/compare/{label}`` of ``rung``'s runs, created or resumed."""
        study = optuna.create_study(
            storage=self.storage,
            study_name=f"{self.name}/compare/{label}",
            sampler=sampler,
            pruner=pruner or optuna.pruners.NopPruner(),
            load_if_exists=True,
        )
        record_rung(study, rung, training=objective.identity())
        set_study_scale(study, objective.scale)
        return study

    def _search(self, label: str, study: optuna.Study, rung: Rung, objective: ProxyObjective, trials: int) -> list:
        """Run ``study`` until it has ``trials`` finished trials; all of them."""
        left = trials - len(study.get_trials(deepcopy=False, states=RUN_STATES))
        self.events.stage_started(label, rung, max(left, 0))
        if left > 0:
            study.optimize(objective, n_trials=left, callbacks=[self._report(rung)])
        return study.get_trials(deepcopy=False, states=RUN_STATES)

    def _report(self, rung: Rung):
        return lambda study, trial: self.events.trial_finished(-1, rung, trial)

    # -- The truth at the target ---------------------------------------------------------------------

    def _truth_grid(self, centre: float) -> list[float]:
        n, span = self.plan.truth_lrs, self.plan.truth_span
        return [float(v) for v in centre * span ** (np.arange(n) / (n - 1) - 0.5)]

    def _truth(
        self, parametrization: str, target: Rung, lrs: list[float], reach: tuple[float, float] | None
    ) -> tuple[TruthCurve, list[FrozenTrial]]:
        """The truth grid ``lrs`` (around the law's prediction), reaching out to ``reach`` at
        twice its step and extended while its best LR is at an edge; the curve and the runs."""
        step = (lrs[-1] / lrs[0]) ** (1 / (len(lrs) - 1))
        if reach is not None:
            low, high = min(reach[0], lrs[0]), max(reach[1], lrs[-1])
            lrs = sorted([*_outward(lrs[0], low, step**2), *lrs, *_outward(lrs[-1], high, step**2)])
        for _ in range(_TRUTH_EXTENSIONS + 1):
            label = f"truth-{parametrization}"
            trials = {seed: self._train(label, target, lrs, seed) for seed in range(self.plan.truth_seeds)}
            runs = pd.DataFrame(
                {"lr": lr, "seed": seed, "loss": trial.value, "diverged": bool(trial.user_attrs.get(DIVERGED_ATTR))}
                for seed, by_lr in trials.items()
                for lr, trial in by_lr.items()
            )
            curve = fit_truth_curve(runs)
            edge = int(np.argmin(curve.mean_loss))
            if 0 < edge < len(lrs) - 1:
                break
            lrs = sorted([*lrs, lrs[0] / step if edge == 0 else lrs[-1] * step])
        return curve, [trial for by_lr in trials.values() for trial in by_lr.values()]

    # -- The strategies ------------------------------------------------------------------------------

    def _law_rows(self, ladders, targets, truth) -> list[dict]:
        """One target run at the law's recommended LR, and one at its median, per parametrization;
        and for μP, the law refitted with the μP prior (`priors.MUP`: no drift with width)."""
        rows = []
        mup_law = fit_law(ladders["mup"].law.observations, prior=priors.MUP)
        laws = (
            ("law ladder (sp)", "sp", ladders["sp"].law, ladders["sp"]),
            ("law ladder (μP)", "mup", ladders["mup"].law, ladders["mup"]),
            ("law ladder (μP, μP prior)", "mup", mup_law, ladders["mup"]),
        )
        for label, parametrization, law, ladder in laws:
            prediction = law.predict(targets[parametrization].scale())
            for suffix, lr in (("", prediction.recommend().lr), (", median", prediction.lr)):
                run = self._train(f"law-{parametrization}", targets[parametrization], [lr])[lr]
                cost = _ladder_cost(ladder)
                rows.append(
                    self._row(label + suffix, parametrization, lr, truth[parametrization], [run], ladder_cost=cost)
                )
        return rows

    def _transfer_rows(self, target: Rung, truth: TruthCurve) -> list[dict]:
        plan, rows = self.plan, []
        grid = np.geomspace(*plan.lr_range, plan.proxy_lrs).tolist()
        for label, tokens in (("μTransfer", None), ("μTransfer, horizon matched", target.tokens)):
            proxy = plan.in_mup(plan.base, tokens=tokens)
            sweep = self._train("mutransfer-proxy", proxy, grid)
            completed = [t for t in sweep.values() if t.state == TrialState.COMPLETE]
            lr = min(completed, key=lambda t: t.value).params[LR_PARAM]
            run = self._train("mutransfer", target, [lr])[lr]
            rows.append(self._row(label, "mup", lr, truth, [run], before=list(sweep.values()), before_rung=proxy))
        return rows

    def _pruned_search_row(self, target: Rung, truth: TruthCurve) -> dict:
        """One real TPE search at the target with Optuna's default pruner, over the truth grid's reach."""
        objective = target.objective(
            (float(truth.lrs[0]), float(truth.lrs[-1])), lr_param=LR_PARAM, device=self.device, **self.training
        )
        tpe = optuna.samplers.TPESampler(seed=self.seed)
        study = self._study(f"search-pruned/{target.name}", target, objective, tpe, optuna.pruners.MedianPruner())
        trials = self._search("TPE + median pruner", study, target, objective, self.plan.pruned_search_trials)
        best = _best_completed(trials)
        row = self._row("TPE + median pruner (real)", "sp", best.params[LR_PARAM], truth, trials, chosen_seed0=best)
        row["pruned"] = sum(t.state == TrialState.PRUNED for t in trials)
        return row

    def _sampler_row(self, ladder: LadderResult, target: Rung, truth: TruthCurve, replays: pd.DataFrame) -> dict:
        """The law as `LRLawSampler`'s prior, ``sampler_trials`` trials at the target: run once for real,
        scored by its replays' mean."""
        plan = self.plan
        objective = target.objective(plan.lr_range, lr_param=LR_PARAM, device=self.device, **self.training)
        sampler = LRLawSampler(ladder.law, scale=target.scale(), seed=self.seed)
        study = self._study(f"law-sampler/{target.name}", target, objective, sampler)
        trials = self._search("law + LRLawSampler", study, target, objective, plan.sampler_trials)
        best = _best_completed(trials)
        row = self._row(
            f"law + LRLawSampler, {plan.sampler_trials} trials",
            "sp",
            best.params[LR_PARAM],
            truth,
            trials,
            ladder_cost=_ladder_cost(ladder),
            chosen_seed0=best,
        )
        replayed = replays[(replays["sampler"] == "law + LRLawSampler") & (replays["trials"] == plan.sampler_trials)]
        row["regret"], row["regret_se"] = float(replayed["regret"].iloc[0]), float(replayed["regret_se"].iloc[0])
        row["scored_by"] = f"replay mean over {plan.replay_seeds} seeds"
        return row

    def _row(
        self,
        strategy: str,
        parametrization: str,
        lr: float,
        truth: TruthCurve,
        target_runs: list[FrozenTrial],
        *,
        ladder_cost: tuple[float, float, int] = (0.0, 0.0, 0),
        before: Sequence[FrozenTrial] = (),
        before_rung: Rung | None = None,
        chosen_seed0: FrozenTrial | None = None,
    ) -> dict:
        """A strategy's row: its runs' cost, the chosen LR on the truth curve, and the chosen LR
        trained for real at the truth's seeds (reusing the strategy's own seed-0 run of it)."""
        target = self.plan.target if parametrization == "sp" else self.plan.in_mup(self.plan.target)
        seed0 = chosen_seed0 or (target_runs[0] if len(target_runs) == 1 else None)
        losses = [
            seed0.value
            if seed == 0 and seed0 is not None
            else self._train(f"chosen-{parametrization}", target, [lr], seed)[lr].value
            for seed in range(self.plan.truth_seeds)
        ]
        ladder_flops, ladder_seconds, ladder_runs = ladder_cost
        share = 1 + len(self.plan.also_serves)
        before_flops = sum(trial_flops(t, before_rung) for t in before) if before_rung else 0.0
        before_seconds = sum(trial_seconds(t) for t in before)
        target_flops = sum(trial_flops(t, target) for t in target_runs)
        target_seconds = sum(trial_seconds(t) for t in target_runs)
        own_flops, own_seconds = before_flops + target_flops, before_seconds + target_seconds
        return {
            "strategy": strategy,
            "parametrization": parametrization,
            "runs": ladder_runs + len(before) + len(target_runs),
            "target_runs": len(target_runs),
            "lr": float(lr),
            "regret": float(truth.regret(lr)),
            "regret_se": float(truth.regret_se(lr)),
            "measured_regret": float(np.mean(losses)) / truth.best_loss - 1,
            "measured_se": truth.seed_sd / math.sqrt(len(losses)) / truth.best_loss,
            "flops": ladder_flops + own_flops,
            "seconds": ladder_seconds + own_seconds,
            "flops_amortised": ladder_flops / share + own_flops,
            "seconds_amortised": ladder_seconds / share + own_seconds,
            "scored_by": "truth curve",
        }

    # -- Replays ---------------------------------------------------------------------------------------

    def _replays(
        self,
        truth: TruthCurve,
        law: LRLaw,
        window: tuple[float, float],
        flops_per_run: float,
        seconds_per_run: float,
    ) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
        plan, scale = self.plan, self.plan.target.scale()
        searches = {
            "TPE": (lambda s: optuna.samplers.TPESampler(seed=s), plan.search_trials, plan.lr_range),
            "GP": (lambda s: optuna.samplers.GPSampler(seed=s), plan.search_trials, plan.lr_range),
            "random": (lambda s: optuna.samplers.RandomSampler(seed=s), plan.search_trials, plan.lr_range),
            WINDOW_TPE: (lambda s: optuna.samplers.TPESampler(seed=s), plan.search_trials, window),
            "law + LRLawSampler": (
                lambda s: LRLawSampler(law, scale=scale, seed=s),
                max(plan.sampler_trials, 4),
                plan.lr_range,
            ),
        }
        tables, regrets = [], {}
        for label, (make, trials, lr_range) in searches.items():
            self.events.stage_started(f"replay {label} ({plan.replay_seeds} seeds)", plan.target, 0)
            regrets[label] = replay_search(truth, make, trials=trials, seeds=plan.replay_seeds, lr_range=lr_range)
            table = summarize_replay(regrets[label], flops_per_run=flops_per_run, seconds_per_run=seconds_per_run)
            tables.append(table.assign(sampler=label))
        return pd.concat(tables, ignore_index=True), regrets


def _replayed_rows(replays: pd.DataFrame, budgets: Sequence[int]) -> list[dict]:
    """Ordinary search's rows: each replayed sampler at a few budgets, scored by its mean over seeds."""
    rows = []
    for sampler in ("TPE", "GP", "random", WINDOW_TPE):
        for trials in sorted(set(budgets)):
            at = replays[(replays["sampler"] == sampler) & (replays["trials"] == trials)]
            if at.empty:
                continue
            row = at.iloc[0]
            rows.append(
                {
                    "strategy": f"{sampler}, {trials} trials (replayed)",
                    "parametrization": "sp",
                    "runs": trials,
                    "target_runs": trials,
                    "lr": math.nan,
                    "regret": float(row["regret"]),
                    "regret_se": float(row["regret_se"]),
                    "measured_regret": math.nan,
                    "measured_se": math.nan,
                    "flops": float(row["flops"]),
                    "seconds": float(row["seconds"]),
                    "flops_amortised": float(row["flops"]),
                    "seconds_amortised": float(row["seconds"]),
                    "scored_by": "replay mean",
                }
            )
    return rows


def _trials_to_goal(regrets: dict[str, np.ndarray], flops_per_run: float) -> pd.DataFrame:
    rows = []
    for sampler, table in regrets.items():
        for goal in REGRET_GOALS:
            trials = trials_to_goal(table, goal)
            median = float(np.median(trials))
            rows.append(
                {
                    "sampler": sampler,
                    "goal": goal,
                    "median_trials": median,
                    "median_flops": median * flops_per_run,
                    "reached": float(np.isfinite(trials).mean()),
                    "budget": table.shape[1],
                }
            )
    return pd.DataFrame(rows)


def _goal(strategies: pd.DataFrame, tpe_flops: float) -> dict[str, object]:
    """The product's goal: a law strategy within `GOAL_REGRET`, at most `GOAL_FLOPS_SHARE` of TPE's
    FLOPs to that regret, and no worse than μTransfer beyond twice the standard error of the gap."""
    law = strategies[strategies["strategy"].str.startswith("law")]
    best = law.loc[law["regret"].idxmin()]
    transfer = strategies[strategies["strategy"] == "μTransfer"].iloc[0]
    gap = float(best["regret"] - transfer["regret"])
    gap_se = math.hypot(best["regret_se"], transfer["regret_se"])
    return {
        "best_law_strategy": best["strategy"],
        "regret": float(best["regret"]),
        "regret_se": float(best["regret_se"]),
        "regret_goal": GOAL_REGRET,
        "flops": float(best["flops"]),
        "tpe_flops_to_goal": tpe_flops,
        "flops_share": float(best["flops"]) / tpe_flops if math.isfinite(tpe_flops) else 0.0,
        "flops_share_goal": GOAL_FLOPS_SHARE,
        "gap_vs_mutransfer": gap,
        "gap_se": gap_se,
        "met": bool(
            best["regret"] <= GOAL_REGRET and float(best["flops"]) <= GOAL_FLOPS_SHARE * tpe_flops and gap <= 2 * gap_se
        ),
    }


def _outward(start: float, end: float, step: float) -> list[float]:
    """LRs from ``start`` (excluded) to ``end`` (included), log-evenly, no step wider than ``step``
    (none when ``end`` is ``start``)."""
    n = math.ceil(abs(math.log(end / start)) / math.log(step) - 1e-9)
    return [float(start * (end / start) ** (k / n)) for k in range(1, n)] + ([end] if n >= 1 else [])


def _served(ladder: LadderResult, targets: Sequence[Rung]) -> pd.DataFrame:
    rows = []
    for target in targets:
        prediction = ladder.predict(target.scale())
        lo, hi = prediction.interval(0.9)
        rows.append(
            {
                "target": target.name,
                "params": target.scale().params,
                "tokens": target.scale().tokens,
                "recommended_lr": prediction.recommend().lr,
                "lr": prediction.lr,
                "lo90": lo,
                "hi90": hi,
            }
        )
    return pd.DataFrame(rows)


def _ladder_cost(ladder: LadderResult) -> tuple[float, float, int]:
    rungs = ladder.rungs
    return float(rungs["flops"].sum()), float(rungs["wall_seconds"].sum()), int(rungs["trials"].sum())


def _best_completed(trials: Sequence[FrozenTrial]) -> FrozenTrial:
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        raise ValueError("no completed trial to choose an LR from")
    return min(complete, key=lambda t: t.value)


#: Ladder shapes of the presets: rung widths, the scored target, the targets it also serves.
PRESETS: dict[str, dict[str, object]] = {
    # 2 CPU cores, about 80 minutes: rungs of 6k to 25k parameters, a target of 445k (18x the
    # top rung), 3 tokens per parameter everywhere (1.3M tokens at the target, about 100 s a
    # run). Every run is scored on 33k validation tokens (64 batches): on the default 4k,
    # which model happens to suit those few tokens moves the loss by about 1%.
    "cpu": {
        "widths": (16, 24, 32),
        "target_width": 136,
        "also_serves": (96,),
        "shape": {"depth": 2, "head_dim": 8, "seq_len": 64, "batch_size": 8, "tokens_per_param": 3.0},
        "budgets": {"pruned_search_trials": 2, "training": {"eval_batches": 64}},
    },
    # One H200, meant for under 10 minutes (an estimate: no GPU has run it): rungs of 25k to 99k
    # parameters, a target of 2.7M (27x).
    "gpu": {
        "widths": (32, 48, 64),
        "target_width": 336,
        "also_serves": (160,),
        "shape": {"depth": 2, "head_dim": 16, "seq_len": 128, "batch_size": 16, "tokens_per_param": 4.0},
        "budgets": {"training": {"eval_batches": 32}},
    },
}


def comparison_plan(preset: str = "cpu", **budgets) -> ComparisonPlan:
    """The `ComparisonPlan` of a preset (``"cpu"`` or ``"gpu"``, see `PRESETS`); ``budgets``
    override its `ComparisonPlan` fields (``replay_seeds``, ``truth_lrs``, ...).

    Example:
        >>> plan = comparison_plan("cpu")
        >>> [rung.model.width for rung in plan.rungs], plan.target.model.width
        ([16, 24, 32], 136)
        >>> round(plan.target.scale().params / plan.rungs[-1].scale().params, 1)
        18.0
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    settings = PRESETS[preset]
    shape = settings["shape"]
    rungs = tuple(default_rungs(settings["widths"], **shape))
    target, *also = default_rungs([settings["target_width"], *settings["also_serves"]], **shape)
    by_width = {rung.model.width: rung for rung in [target, *also]}
    return ComparisonPlan(
        rungs=rungs,
        target=by_width[settings["target_width"]],
        also_serves=tuple(by_width[w] for w in settings["also_serves"]),
        **{**settings["budgets"], **budgets},
    )
