"""Climbing the ladder: one LR search per rung, each starting from the law of the rungs below.

Every rung is an Optuna study in one storage, named ``{name}/{rung.name}``, that records
its scale (`set_study_scale`). Its sampler is an `LRLawSampler` whose law is a
`LawFromStorage` over the rungs below it: the first rung searches the user's range with a
wide prior; every later rung starts at the law's prediction and needs fewer trials. An
`LRLawPruner` stops diverged and hopeless runs, `LRLawConvergence` ends a rung once
another trial is not worth its cost, and a rung whose sweep ends at its best run steps
past that edge (`_bracket`), since the law can only use sweeps that bracket their optimum.

Everything lives in the storage, so an interrupted ladder resumes where it stopped: a
rung that finished is not run again, and a rung cut short runs only its missing trials.
Several workers (processes or machines running the same ladder on one storage) share each
rung's budget: a trial starts only while the rung's runs, finished and running, fall short
of it (`_admitted`); a bracketing LR is enqueued once; a rung ends when all its runs have,
a dead worker's run retried (`_finish_rung`).
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import math
import os
import random
import socket
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import NamedTuple

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from optuna_lrlaw.integration import (
    LawFromStorage,
    LRLawConvergence,
    LRLawPruner,
    LRLawSampler,
    set_study_scale,
)
from optuna_lrlaw.integration.study import (
    DIVERGED_ATTR,
    FINISHED_STATES,
    MAX_RETRIES,
    RUN_STATES,
    STALE_SECONDS,
    checked_lr_range,
    name_the_metric,
    observations_from_study,
    open_storage,
    study_scale,
    trial_lr,
)
from optuna_lrlaw.ladder import _jobs
from optuna_lrlaw.ladder.rungs import AnyRung, Rung, TrainerRung, rung_identity
from optuna_lrlaw.proxies import concurrency
from optuna_lrlaw.proxies.config import ProxyConfig
from optuna_lrlaw.proxies.data import builtin_corpus_for
from optuna_lrlaw.proxies.objective import ProxyObjective
from optuna_lrlaw.proxies.train import TrainConfig, resolve_device, training_memory
from optuna_lrlaw.science._arguments import check_int, check_real
from optuna_lrlaw.science.law import DEFAULT_FEATURES, LRLaw, estimate_optima
from optuna_lrlaw.science.prediction import LRPrediction
from optuna_lrlaw.science.scale import Scale

#: Extra trials a rung may spend to bracket its optimum, and how far past its edge each goes.
BRACKET_TRIALS = 2
BRACKET_STEP = 2.0
#: Study user attributes the ladder writes: the rung's model (and place), and that it finished.
RUNG_ATTR = "lrlaw.ladder.rung"
DONE_ATTR = "lrlaw.ladder.done"
#: On a ladder's first rung: the model it prepares for (name and scale), when given.
TARGET_ATTR = "lrlaw.ladder.target"


class LadderEvents:
    """Hooks called as the ladder climbs, for progress displays and publishing; each does
    nothing here. Subclass it and override what you need (or give any object with all its
    methods): the CLI's rich progress bars do, and publish each finished rung to
    optuna-dashboard, which the ladder itself never imports.

    Example:
        >>> from optuna_lrlaw.visualization import publish_to_dashboard
        >>> class ToDashboard(LadderEvents):
        ...     def rung_finished(self, index, rung, study, prior):
        ...         publish_to_dashboard(study, prior)
        >>> run_ladder(default_rungs((32, 48)), events=ToDashboard())  # doctest: +SKIP
    """

    def rung_started(self, index: int, rung: AnyRung, prior: LRPrediction | None, trials_left: int) -> None:
        """Rung ``index`` starts; ``prior`` is the law's prediction for it (None on a first rung)."""

    def trial_finished(self, index: int, rung: AnyRung, trial: FrozenTrial) -> None:
        """A run of rung ``index`` has finished (completed, pruned or failed), once each, this
        worker's or, as this worker sees it ended, another's (its ``lrlaw.ladder.worker``
        says whose); ``index`` is -1 outside the ladder."""

    def note(self, index: int, rung: AnyRung, message: str) -> None:
        """Something a reader of the progress should know about rung ``index``, e.g. why it
        ran fewer trials than it announced."""

    def rung_finished(self, index: int, rung: AnyRung, study: optuna.Study, prior: LRPrediction | None) -> None:
        """This worker has marked rung ``index`` done (once per rung, in one worker): the
        moment to publish what it found, e.g. `publish_to_dashboard(study, prior)`."""

    def ladder_finished(self, result: LadderResult, study: optuna.Study, prior: LRPrediction | None) -> None:
        """The climb is over: ``result`` holds the law of every rung and the target; ``study``
        is the top rung's, ``prior`` what the rungs below predicted for it. The moment to
        publish the answer, e.g. `publish_to_dashboard(study, prior, law=result.law,
        target=result.target.scale)`."""

    def stage_started(self, label: str, rung: AnyRung, trials_left: int) -> None:
        """A search outside the ladder starts (`compare_search_costs`): ``label`` names it."""


class LadderTarget(NamedTuple):
    """The model a ladder prepares for: its name and scale (stored with the ladder)."""

    name: str
    scale: Scale


@dataclass(frozen=True)
class LadderResult:
    """What a ladder found: one row per rung, and the law fitted on all of them.

    ``rungs`` columns: ``rung``, ``study``, ``params``, ``tokens``, ``batch_tokens``; the
    law's prediction before the rung's search (``prior_lr``, ``prior_lo``, ``prior_hi``: 90%
    interval; NaN with no law yet); the trials (``trials``, ``pruned``, ``diverged``); the
    search's result (``best_lr``, ``best_loss``, and the rung's optimum as its own sweep
    measures it, ``lr_star`` with its 90% interval ``lr_lo``, ``lr_hi``, and ``bracketed``:
    False when it is only a bound and the law leaves the rung out); its cost (``flops``,
    ``wall_seconds``). ``target``: the model the ladder prepares for, when it was given one.
    """

    rungs: pd.DataFrame
    law: LRLaw | None
    target: LadderTarget | None = None

    def predict(self, scale: Scale) -> LRPrediction:
        """The law's prediction at a new scale, e.g. the model the ladder prepares for."""
        if self.law is None:
            raise ValueError("the ladder's rungs do not support a law yet (no sweep brackets its optimum)")
        return self.law.predict(scale)


def run_ladder(
    rungs: Sequence[AnyRung],
    *,
    storage: str | optuna.storages.BaseStorage = "sqlite:///optuna-lrlaw.db",
    name: str = "ladder",
    trials: int = 6,
    lr_range: tuple[float, float] = (1e-4, 1e-1),
    max_expected_regret: float = 1e-3,
    features: Sequence[str] = DEFAULT_FEATURES,
    device: str = "auto",
    seed: int = 0,
    events: LadderEvents | None = None,
    target: AnyRung | None = None,
    stale_after: float = STALE_SECONDS,
    jobs: int | None = 1,
    **training,
) -> LadderResult:
    """Search the optimal LR at each rung, smallest first, refitting the law after every trial.

    Args:
        rungs: the ladder, in any order (it is climbed by parameter count).
        storage: an Optuna storage or URL; SQLite by default, PostgreSQL or MySQL URLs let
            several machines work on one ladder.
        name: the ladder's name, the prefix of its studies' names.
        trials: the most trials a rung runs (it stops earlier once converged).
        lr_range: the range of peak LRs searched, log-uniformly.
        max_expected_regret: a rung stops once its best LR's expected relative regret is
            below this (`LRLawConvergence`).
        features: the scale features of the law (see `fit_law`).
        device: where the proxies train: ``"auto"`` (a GPU when there is one), ``"cpu"``, ``"cuda"``.
        seed: seeds the samplers and, for a new ladder of proxies, its training runs
            (initialization and batch order). The ladder stores its training seed when it is
            created and every worker that joins it trains with that one, whatever its own
            ``seed``: a run another worker retries resumes its checkpoint.
        events: progress hooks (`LadderEvents`).
        target: the model the ladder prepares for; stored with the ladder, so that its
            report (`load_ladder`, ``optuna-lrlaw report``) leads with the LR predicted for it.
        stale_after: seconds after which a silent worker's trial is failed and run again: a
            trial whose heartbeat (or, without heartbeats, whose start) is older. A worker of
            this machine whose process has ended is not waited for.
        jobs: how many runs train at once on this machine: ``jobs - 1`` helper processes
            join the ladder on ``storage`` (a URL) as further workers, each rung's budget
            still exact. ``None`` picks it from the device for a ladder of proxies (one
            job on the CPU, whose cores torch's threads already use; on a GPU as many as its
            free memory holds, at most 8 and never more than ``trials``) and 1 for a ladder of
            `TrainerRung`, whose trainer the ladder cannot see.
        training: further `TrainConfig` fields for every run (``schedule``, ``corpus``, ...).

    Example:
        >>> from optuna_lrlaw.ladder import default_rungs
        >>> result = run_ladder(default_rungs((32, 64)), storage="sqlite:///ladder.db")  # doctest: +SKIP
        >>> result.rungs[["rung", "trials", "lr_star"]]                                    # doctest: +SKIP
    """
    if not rungs:
        raise ValueError("a ladder needs at least one rung")
    check_int(trials, "trials", minimum=1)
    check_int(seed, "seed", minimum=0)
    if jobs is not None:
        check_int(jobs, "jobs", minimum=1)
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name must name the ladder (its studies are called NAME/RUNG), got {name!r}")
    lr_range = checked_lr_range(lr_range)  # before the storage is created
    ordered = sorted(rungs, key=lambda rung: rung.scale().params)
    names = [rung.name for rung in ordered]
    if len(set(names)) != len(names):
        raise ValueError(f"the rungs must differ in scale, got {names}")
    if target is not None and target.scale().params < ordered[0].scale().params:
        warnings.warn(
            f"the target {target.name} is smaller than the smallest rung {names[0]}: the law is fitted for "
            "scaling up, and a model below the rungs is better searched directly",
            UserWarning,
            stacklevel=2,
        )
    if training.get("corpus") is None and all(isinstance(rung, Rung) for rung in ordered):
        # One built-in corpus for every rung: the one the largest rung reads at most once.
        training["corpus"] = str(builtin_corpus_for(max(rung.tokens for rung in ordered)).path)
    # Every rung's objective checks its device, corpus and settings before the storage is
    # created: bad input writes nothing.
    objectives = [rung.objective(lr_range, device=device, **training) for rung in ordered]
    stale_after = check_real(stale_after, "stale_after", at_least=_MIN_STALE_SECONDS)
    storage_url, storage = storage, open_storage(storage, stale_seconds=stale_after)
    study_names = [f"{name}/{rung_name}" for rung_name in names]
    if any(isinstance(objective, ProxyObjective) for objective in objectives):
        train_seed = _ladder_train_seed(storage, study_names[0], seed)
        objectives = [o.with_seed(train_seed) if isinstance(o, ProxyObjective) else o for o in objectives]
    settings = dict(trials=trials, seed=seed, lr_range=lr_range, max_expected_regret=max_expected_regret)
    settings |= dict(features=features, target=target, stale_after=stale_after)
    helper_call = dict(rungs=ordered, storage=storage_url, name=name, device=device, jobs=1, **settings, **training)
    with _jobs_for(objectives, jobs, trials, helper_call):
        return _climb(ordered, objectives, study_names, storage, events or LadderEvents(), **settings)


def _jobs_for(objectives: list, jobs: int | None, trials: int, helper_call: dict) -> contextlib.AbstractContextManager:
    """``jobs - 1`` helpers, each calling ``run_ladder(**helper_call)``, and this process's
    share of the torch threads, for as long as the climb lasts."""
    proxies = [o for o in objectives if isinstance(o, ProxyObjective)]
    device = resolve_device(proxies[0].device) if proxies else None
    if jobs is None:
        all_proxies = len(proxies) == len(objectives)
        memory = max(training_memory(o.config) for o in proxies) if all_proxies else 0
        jobs = concurrency.default_jobs(device, trials, memory) if all_proxies else 1
    if jobs == 1:
        return contextlib.nullcontext()
    threads = concurrency.threads_per_job(device, jobs) if device is not None else None
    stack = contextlib.ExitStack()
    stack.enter_context(_jobs.helpers(jobs - 1, run_ladder, helper_call, threads))
    stack.enter_context(concurrency.torch_threads(threads))
    return stack


def _climb(
    ordered: Sequence[AnyRung],
    objectives: list,
    study_names: list[str],
    storage: optuna.storages.BaseStorage,
    events: LadderEvents,
    *,
    trials: int,
    seed: int,
    lr_range: tuple[float, float],
    max_expected_regret: float,
    features: Sequence[str],
    target: AnyRung | None,
    stale_after: float,
) -> LadderResult:
    """`run_ladder`'s climb, its arguments checked and its storage open."""
    rows = []
    for index, rung in enumerate(ordered):
        # The rungs below this one make its law: the prediction it starts from.
        law = LawFromStorage(storage, features=features, studies=study_names[:index])
        objective = objectives[index]
        study = optuna.create_study(
            storage=storage,
            study_name=study_names[index],
            # A rung's sweep is there to measure its optimum for the law: spread it.
            sampler=LRLawSampler(law, seed=seed + index, acquisition="spread"),
            pruner=LRLawPruner(),
            load_if_exists=True,
        )
        identity = objective.identity() if isinstance(objective, ProxyObjective) else None
        record_rung(study, rung, training=identity, index=index)
        set_study_scale(study, objective.scale)
        if index == 0:
            if target is not None:
                study.set_user_attr(TARGET_ATTR, {"name": target.name, **asdict(target.scale())})
            stored_target = _target_of(study)
        fitted = law.law_for(study)
        prior = None if fitted is None else fitted.predict(objective.scale)
        done = study.user_attrs.get(DONE_ATTR, False)
        if not done:
            _fail_abandoned(study, stale_after)
        searched = [t for t in _trials(study, *RUN_STATES) if not t.user_attrs.get(BRACKET_ATTR)]
        trials_left = 0 if done else trials - len(searched)  # a failed trial is retried, not counted
        events.rung_started(index, rung, prior, trials_left)
        if not done:
            ran: list[int] = []
            shown = {t.number for t in _trials(study, *FINISHED_STATES)}

            def report(
                study: optuna.Study,
                trial: FrozenTrial | None,
                index: int = index,
                rung: AnyRung = rung,
                ran: list = ran,
                shown: set = shown,
            ) -> None:
                """Each run of the rung once, as it ends here or another worker's is seen ended
                (``trial`` None: only those)."""
                if trial is not None and not trial.user_attrs.get(SURPLUS_ATTR):
                    ran.append(trial.number)
                ended = [t for t in _trials(study, *FINISHED_STATES) if t.number not in shown]
                if trial is not None and trial.number not in shown | {t.number for t in ended}:
                    ended.append(trial)
                for finished in sorted(ended, key=lambda t: t.number):
                    shown.add(finished.number)
                    if not finished.user_attrs.get(SURPLUS_ATTR):  # not a run: the rung was full
                        events.trial_finished(index, rung, finished)

            def note(text: str, index: int = index, rung: AnyRung = rung) -> None:
                events.note(index, rung, text)

            if trials_left > 0:
                convergence = LRLawConvergence(max_expected_regret)
                searching = _admitted(objective, trials)
                _optimize(study, searching, n_trials=trials_left, callbacks=[convergence, report])
                if len(ran) < trials_left:
                    why = (
                        "the other workers ran the rest"
                        if convergence.stopped_at is None
                        else f"converged (the best LR's expected regret, {convergence.stopped_at:.2%}, "
                        f"is within {max_expected_regret:.2%})"
                    )
                    note(f"ran {len(ran)} of {trials_left} trial(s) here: {why}")
            _finish_rung(study, storage, objective, lr_range, report, stale_after, note)
            if not study.user_attrs.get(DONE_ATTR):
                study.set_user_attr(DONE_ATTR, True)
                events.rung_finished(index, rung, study, prior)
        rows.append(_summary(study, rung, prior))
    everything = LawFromStorage(storage, features=features, studies=study_names)
    with warnings.catch_warnings():  # no law at the end is what `law=None` says
        warnings.simplefilter("ignore", UserWarning)
        result = LadderResult(pd.DataFrame(rows), everything.law_for(None), stored_target)
    events.ladder_finished(result, study, prior)
    return result


#: On a ladder's first rung: the training seed of all its proxy runs, set by the worker
#: that created the ladder and adopted by every other.
TRAIN_SEED_ATTR = "lrlaw.ladder.train_seed"
#: How long a worker that found the ladder just created waits for its creator to store the
#: training seed before it takes `TrainConfig`'s default (the creator died in between).
_TRAIN_SEED_WAIT_SECONDS = 30.0


def _ladder_train_seed(storage: optuna.storages.BaseStorage, first_study: str, wanted: int) -> int:
    """The ladder's training seed: ``wanted`` when this worker creates the ladder (creating
    its first rung's study is atomic: one worker wins), else the one its creator stored. A
    ladder from before the seed was stored trained with `TrainConfig`'s default seed."""
    try:
        study = optuna.create_study(storage=storage, study_name=first_study)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(storage=storage, study_name=first_study, sampler=optuna.samplers.RandomSampler())
    else:
        study.set_user_attr(TRAIN_SEED_ATTR, wanted)
        return wanted
    deadline = time.monotonic() + _TRAIN_SEED_WAIT_SECONDS
    while (stored := study.user_attrs.get(TRAIN_SEED_ATTR)) is None:
        if study.get_trials(deepcopy=False) or time.monotonic() > deadline:
            stored = TrainConfig.seed
            study.set_user_attr(TRAIN_SEED_ATTR, stored)
            break
        time.sleep(0.1)
    if stored != wanted:
        warnings.warn(
            f"ladder {first_study.rsplit('/', 1)[0]!r} trains at seed {stored}, stored when it was created; "
            f"seed {wanted} seeds this worker's samplers only",
            stacklevel=3,
        )
    return stored


def load_ladder(
    storage: str | optuna.storages.BaseStorage,
    name: str = "ladder",
    *,
    features: Sequence[str] = DEFAULT_FEATURES,
) -> tuple[LadderResult, list[optuna.Study]]:
    """A ladder climbed by `run_ladder`, read back from ``storage`` without training anything:
    its result (each rung's row, the law on all rungs) and its studies, smallest rung first.

    Raises:
        ValueError: when ``storage`` holds no rung of a ladder called ``name``.
    """
    storage = open_storage(storage)
    prefix = f"{name}/"
    summaries = [
        summary
        for summary in optuna.get_all_study_summaries(storage)
        if summary.study_name.startswith(prefix)
        and "/" not in summary.study_name[len(prefix) :]
        and "index" in summary.user_attrs.get(RUNG_ATTR, {})
    ]
    if not summaries:
        raise ValueError(f"the storage holds no rung of a ladder called {name!r} (studies named {prefix}RUNG)")
    summaries.sort(key=lambda summary: summary.user_attrs[RUNG_ATTR]["index"])
    studies = [optuna.load_study(study_name=s.study_name, storage=storage) for s in summaries]
    names = [study.study_name for study in studies]
    rows = []
    for index, study in enumerate(studies):
        stored = study.user_attrs[RUNG_ATTR]
        scale = study_scale(study)
        rung = _stored_rung(stored, scale)
        with warnings.catch_warnings():  # a first rung has no law below it
            warnings.simplefilter("ignore", UserWarning)
            below = LawFromStorage(storage, features=features, studies=names[:index]).law_for(study)
        rows.append(_summary(study, rung, None if below is None else below.predict(scale)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        law = LawFromStorage(storage, features=features, studies=names).law_for(None)
    return LadderResult(pd.DataFrame(rows), law, _target_of(studies[0])), studies


def _target_of(first: optuna.Study) -> LadderTarget | None:
    """The target stored on a ladder's first rung, if any."""
    stored = first.user_attrs.get(TARGET_ATTR)
    if stored is None:
        return None
    fields = {k: v for k, v in stored.items() if k != "name" and v is not None}
    return LadderTarget(stored["name"], Scale(**fields))


def _stored_rung(stored: dict, scale: Scale) -> AnyRung:
    """The rung a study recorded, rebuilt to read its runs (a `TrainerRung`'s training code is not stored)."""
    if "trainer" in stored:

        def cannot_train(lr: float, trial: optuna.Trial) -> float:
            raise RuntimeError(f"rung {stored['trainer']!r} was read from storage: pass your own TrainerRung to train")

        return TrainerRung(stored["trainer"], scale, cannot_train)
    return Rung(ProxyConfig(**stored["model"]), tokens=int(scale.tokens), batch_size=stored.get("batch_size", 32))


def record_rung(
    study: optuna.Study, rung: AnyRung, *, training: dict[str, object] | None = None, **place: object
) -> None:
    """Record on ``study`` the rung it searches (model, batch size, ``training``: the settings
    and corpus its runs train with, `ProxyObjective.identity`; and ``place``), refusing a
    study that holds runs of another rung: they would enter the law as this rung's, since a
    study's name holds only the rung's size and tokens (`Rung.name`). Runs made under another
    version of the parametrization's rules (`RULES_VERSION`) are another rung too; a record
    without a version was made under version 1, one without training settings before they
    were stored (it is taken as it is). A study that holds trials but no record was not made
    by a ladder, and is refused as well."""
    now = rung_identity(rung.record())
    stored = study.user_attrs.get(RUNG_ATTR)
    if stored is None:
        made = len(study.get_trials(deepcopy=False))
        if made:
            raise ValueError(
                f"study {study.study_name!r} holds {made} trial(s) that no ladder recorded: it is not a rung of "
                "this ladder; give this ladder another name or storage"
            )
    else:
        before = rung_identity(stored)
        differ = [
            f"{key}: {before.get(key)!r} stored, {value!r} now"
            for key, value in now.items()
            if before.get(key) != value
        ]
        if training is not None and stored.get("training") is not None:
            differ += [
                f"{key}: {stored['training'].get(key)!r} stored, {value!r} now"
                for key, value in training.items()
                if stored["training"].get(key) != value
            ]
        if differ:
            rules = before.get("rules") != now.get("rules") and "rules" in now
            why = " (the parametrization's rules changed since)" if rules else ""
            raise ValueError(
                f"study {study.study_name!r} holds runs of another rung ({'; '.join(differ)}){why}; "
                "give this ladder another name or storage"
            )
    record = {**place, **rung.record(), **({} if training is None else {"training": training})}
    study.set_user_attr(RUNG_ATTR, record)
    name_the_metric(study)


#: On a trial that a worker started when it was not the rung's to run (the budget taken, its
#: LR run by another worker): it trained nothing (pruned before it started) and is not
#: counted as a run.
SURPLUS_ATTR = "lrlaw.ladder.surplus"
#: On every trial a ladder worker runs: the worker, ``host:pid``, for an operator to tell
#: which machine ran what (shown by optuna-dashboard).
WORKER_ATTR = "lrlaw.ladder.worker"


def worker_name() -> str:
    """This process as `WORKER_ATTR` names it: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


#: On every trial a ladder worker runs: whether its storage records heartbeats (a trial
#: without them is judged by its age, `_abandoned`).
HEARTBEAT_ATTR = "lrlaw.ladder.heartbeats"
#: A trial of a worker of this machine whose process has ended is failed once it is this
#: old (seconds): long enough for a retried trial's new worker to have marked it as its own.
_DEAD_WORKER_GRACE = 5.0
#: On every trial whose objective returned or raised in its worker: if it failed, its run
#: failed (a crash, a NaN), not its worker, and nobody retries it (see `_awaits_retry`).
ENDED_ATTR = "lrlaw.ladder.ended"
#: The shortest ``stale_after``: a live worker's heartbeat must come well within it.
_MIN_STALE_SECONDS = 4.0
#: On a trial enqueued to bracket the rung's optimum (`_bracket_lr`).
BRACKET_ATTR = "lrlaw.ladder.bracket"
#: How often a worker waiting for the other workers' runs of a rung looks at the storage (seconds).
_POLL_SECONDS = 1.0


def _admitted(objective: ProxyObjective, budget: int) -> Callable[[optuna.Trial], float]:
    """``objective``, run only for a trial that is the rung's to run (see `_surplus`); any
    other is pruned at once, before suggesting an LR, marked `SURPLUS_ATTR`, and its
    worker stops searching the rung. An admitted trial is marked with its worker (`WORKER_ATTR`)."""

    def admitted_objective(trial: optuna.Trial) -> float:
        why = _surplus(trial, budget, objective.lr_param)
        if why is not None:
            trial.set_user_attr(SURPLUS_ATTR, True)
            trial.study.stop()
            raise optuna.TrialPruned(why)
        trial.set_user_attr(WORKER_ATTR, worker_name())
        trial.set_user_attr(HEARTBEAT_ATTR, _has_heartbeats(trial.study._storage))
        try:
            return objective(trial)
        finally:
            trial.set_user_attr(ENDED_ATTR, True)

    return admitted_objective


def drain_queue(
    storage: str | optuna.storages.BaseStorage,
    study_name: str,
    objective: ProxyObjective,
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
) -> None:
    """Run ``study_name``'s enqueued trials until none waits, beside any other worker doing the
    same: each LR runs once (`_admitted`), and a trial started without one is pruned at once."""
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    enqueued_only = _admitted(objective, budget=0)
    while study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        _optimize(study, enqueued_only, n_trials=1, callbacks=list(callbacks))


def _surplus(trial: optuna.Trial, budget: int, lr_param: str) -> str | None:
    """Why ``trial`` is not the rung's to run, or None when it is.

    A searched trial needs one of the rung's ``budget`` slots: fewer than ``budget`` earlier
    searched trials may be runs, running or waiting (a dead worker's retried run). The
    storage numbers trials one at a time, so workers that start together agree on which
    trials are within the budget; a dead worker's run, failed and not yet enqueued again,
    keeps its slot (`_awaits_retry`). An enqueued trial (a retried run, or a bracketing LR)
    needs an LR that no earlier trial has run, is running or waits to run, and a bracketing
    one a free bracketing slot.
    """
    counted = (*RUN_STATES, TrialState.RUNNING, TrialState.WAITING)
    trials = trial.study.get_trials(deepcopy=False)  # one read of the storage per trial start
    frozen = next(t for t in trials if t.number == trial.number)
    earlier = [
        t
        for t in trials
        if t.number < trial.number
        and (t.state in counted or _awaits_retry(t, trials))
        and not t.user_attrs.get(SURPLUS_ATTR)
    ]
    lr = trial_lr(frozen, lr_param)  # set already: an enqueued LR, or a dead worker's run retried
    if lr is None:
        searched = [t for t in earlier if not t.user_attrs.get(BRACKET_ATTR)]
        return None if len(searched) < budget else "the rung's budget is taken by other workers"
    if any(trial_lr(t, lr_param) == lr for t in earlier):
        return f"the LR {lr:.4g} is another worker's run"
    brackets = sum(bool(t.user_attrs.get(BRACKET_ATTR)) for t in earlier)
    if frozen.user_attrs.get(BRACKET_ATTR) and brackets >= BRACKET_TRIALS:
        return "the rung's bracketing runs are taken by other workers"
    return None


def _awaits_retry(trial: FrozenTrial, trials: list[FrozenTrial]) -> bool:
    """Whether ``trial`` is a dead worker's run that is about to be enqueued again.

    The worker that fails an abandoned trial (Optuna's heartbeat, or `_fail_abandoned`)
    writes the failure first and the retry after it; another worker starting a trial in
    between must not take the run's slot, or the rung ends with one run too many. A trial
    whose objective ended in its worker (`ENDED_ATTR`), or that has used its `MAX_RETRIES`,
    is not retried.
    """
    if trial.state != TrialState.FAIL or trial.user_attrs.get(ENDED_ATTR) or WORKER_ATTR not in trial.user_attrs:
        return False
    if len(trial.system_attrs.get("retry_history", ())) >= MAX_RETRIES:
        return False
    return not any(trial.number in t.system_attrs.get("retry_history", ()) for t in trials)


def _trials(study: optuna.Study, *states: TrialState) -> list[FrozenTrial]:
    """The study's trials in ``states``, surplus trials (which trained nothing) left out."""
    return [t for t in study.get_trials(deepcopy=False, states=states) if not t.user_attrs.get(SURPLUS_ATTR)]


def _worker_is_gone(worker: str) -> bool:
    """Whether the worker ``host:pid`` ran on this machine and its process has ended."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's worker: only its heartbeats or its trial's age can tell
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


def _abandoned(trial: FrozenTrial, stale_after: float) -> str | None:
    """Why a running trial's worker is known to be gone, or None while it may be running.

    A worker of this machine whose process has ended is gone at once (after a few seconds,
    in which a retried trial's new worker marks it). A trial without heartbeats (run by a
    worker on a storage without them, by one of a version before them, or not by a ladder
    worker) is judged by its age: gone after ``stale_after`` seconds. A trial with
    heartbeats is left to Optuna's heartbeat, which fails and retries it after the same time.
    """
    started = trial.datetime_start
    if trial.state != TrialState.RUNNING or started is None:
        return None
    age = (datetime.datetime.now() - started).total_seconds()
    worker = trial.user_attrs.get(WORKER_ATTR)
    if worker is not None and age > _DEAD_WORKER_GRACE and _worker_is_gone(str(worker)):
        return f"its worker {worker} has ended"
    without_heartbeats = trial.user_attrs.get(HEARTBEAT_ATTR) is not True  # not marked: before heartbeats
    if without_heartbeats and age > stale_after:
        return f"it has run without a heartbeat for {age:,.0f} s (--stale-after {stale_after:g})"
    return None


def _fail_abandoned(study: optuna.Study, stale_after: float) -> None:
    """Fail the study's abandoned trials (`_abandoned`) and enqueue each again at its LR, as
    Optuna's heartbeat retries a stale trial: the retry takes the dead run's slot of the
    budget (a proxy with a checkpoint folder resumes it; up to `MAX_RETRIES` retries)."""
    with warnings.catch_warnings():  # the retry callback is experimental in Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)
    for running in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        why = _abandoned(running, stale_after)
        if why is None:
            continue
        trial = copy.deepcopy(running)  # the storage's own copy is not ours to change
        warnings.warn(
            f"trial {trial.number} of {study.study_name!r} is marked failed and run again: {why}", stacklevel=2
        )
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError, RuntimeError, ValueError):
            # As Optuna fails a stale trial: in the storage, not through the sampler (whose
            # warning about failed runs is for runs that failed, not for their workers).
            if not study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                continue  # another worker failed it first
            # The retry is not the dead worker's: it is marked by whichever worker runs it.
            trial.user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in (WORKER_ATTR, HEARTBEAT_ATTR)}
            with warnings.catch_warnings():  # the retry callback is experimental in Optuna
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                retry(study, trial)


def _optimize(study: optuna.Study, objective: Callable[[optuna.Trial], float], **options) -> None:
    """`optuna.Study.optimize`, ending quietly where another worker took the same trial.

    Optuna marks a waiting trial running by reading its state and writing it back: a row
    lock on PostgreSQL and MySQL, but SQLite has none, so two workers may both take one
    waiting trial (a dead worker's retry, a bracketing LR) and train the same run; the second
    to finish cannot record it. The run is the same (same LR, same seed) and is recorded
    once; the second worker moves on, and `_finish_rung` sees to what is left.
    """
    try:
        study.optimize(objective, **options)
    except ValueError as error:
        if not str(error).startswith("Cannot tell a"):
            raise
        warnings.warn(f"{study.study_name}: another worker finished the same trial first ({error})", stacklevel=2)


def _has_heartbeats(storage: optuna.storages.BaseStorage) -> bool:
    """Whether ``storage`` tells a dead worker from a slow one (Optuna's RDB storage with a
    heartbeat interval; its JournalStorage has no heartbeat)."""
    interval = getattr(storage, "get_heartbeat_interval", None)
    return interval is not None and interval() is not None


def _finish_rung(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    objective: ProxyObjective,
    lr_range: tuple[float, float],
    report: Callable[[optuna.Study, FrozenTrial | None], None],
    stale_after: float,
    note: Callable[[str], None],
) -> None:
    """Wait until the rung's sweep is whole, then bracket its optimum.

    On a storage with heartbeats, a worker whose share of the budget is spent waits for the
    other workers' runs, and runs any trial a dead worker left (Optuna's heartbeat fails it
    and enqueues it again; a proxy resumes from its checkpoint), so that the bracketing
    step, the rung's end and the next rung's law see every run. A storage without
    heartbeats cannot tell a dead worker from a slow one: there a worker does not wait.
    What it waits for it says through ``note``, once for each set of trials it waits on.

    The sampler draws where the optimum probably is, which need not bracket it; but the law
    can use a rung only when its sweep does, so a rung whose best run sits at an edge of its
    sweep tries up to `BRACKET_TRIALS` LRs past that edge, each enqueued once.
    """
    enqueued_only = _admitted(objective, budget=0)
    heartbeats = _has_heartbeats(storage)
    announced: set[int] = set()
    while True:
        if heartbeats:
            with warnings.catch_warnings():  # fail_stale_trials is experimental in Optuna
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
        _fail_abandoned(study, stale_after)
        report(study, None)  # what the other workers finished meanwhile
        pending = study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
        if any(t.state == TrialState.WAITING for t in pending):
            _optimize(study, enqueued_only, n_trials=1, callbacks=[report])
            continue
        if heartbeats and pending:
            if {t.number for t in pending} != announced:
                announced = {t.number for t in pending}
                workers = sorted({str(t.user_attrs.get(WORKER_ATTR, "a worker")) for t in pending})
                note(
                    f"waiting for trial(s) {', '.join(map(str, sorted(announced)))} of {', '.join(workers)}; "
                    f"a silent worker's trial is run again after {stale_after:g} s"
                )
            time.sleep(random.uniform(0.5, 1.5) * _POLL_SECONDS)  # waiting workers look at different moments
            continue
        lr = _bracket_lr(study, objective.lr_param, lr_range)
        if lr is None:
            unbracketed = _unbracketed(study, lr_range)
            if unbracketed is not None:
                note(unbracketed)
            return
        if any(trial_lr(t, objective.lr_param) == lr for t in pending):
            return  # another worker is bracketing
        study.enqueue_trial({objective.lr_param: lr}, user_attrs={BRACKET_ATTR: True})


def _unbracketed(study: optuna.Study, lr_range: tuple[float, float]) -> str | None:
    """Why a finished rung's sweep leaves its optimum outside (the law cannot place it, and
    leaves the rung out), or None when it brackets it or has too few runs to tell."""
    observations, optimum = _own_optimum(study)
    side = optimum.get("beyond")
    if side not in ("below", "above"):
        return None
    finite = observations.loc[~observations["diverged"].astype(bool), "lr"]
    edge = finite.min() if side == "below" else finite.max()
    end = lr_range[0] if side == "below" else lr_range[1]
    why = (
        f"the LR range searched ends there (lr_range {lr_range[0]:.3g} to {lr_range[1]:.3g}): widen it"
        if math.isclose(edge, end, rel_tol=1e-9)
        else f"{sum(bool(t.user_attrs.get(BRACKET_ATTR)) for t in _trials(study, *RUN_STATES))} bracketing run(s) "
        "past it did not reach it"
    )
    return f"the optimum lies {side} the sweep's runs (its best is at {edge:.3g}); {why}; the law leaves this rung out"


def _bracket_lr(study: optuna.Study, lr_param: str, lr_range: tuple[float, float]) -> float | None:
    """The LR `BRACKET_STEP` times past the rung's best run on the side where its optimum
    lies, or None when the sweep brackets its optimum, has too few runs to say on which
    side, has spent its `BRACKET_TRIALS`, or the range ends there (the optimum lies outside
    what the user lets us search), or that LR has failed more often than a retried run may
    (a run that kills its worker every time is not tried for ever).

    Where the range ends at the best run and its neighbour lies more than `BRACKET_STEP`^2
    below it (above, at the lower end), the optimum may still lie in that gap, where no run
    has looked: the rung probes its middle (in log LR) instead of giving up."""
    if sum(bool(t.user_attrs.get(BRACKET_ATTR)) for t in _trials(study, *RUN_STATES)) >= BRACKET_TRIALS:
        return None
    observations, optimum = _own_optimum(study)
    if optimum.get("beyond") not in ("below", "above"):
        return None
    finite = observations.loc[~observations["diverged"].astype(bool), "lr"]
    edge, step = (finite.min(), 1 / BRACKET_STEP) if optimum["beyond"] == "below" else (finite.max(), BRACKET_STEP)
    lr = float(min(max(edge * step, lr_range[0]), lr_range[1]))
    if lr == edge:  # the range ends at the best run: look inside, in a gap wide enough to hide the optimum
        inner = finite[finite < edge] if optimum["beyond"] == "above" else finite[finite > edge]
        neighbour = (inner.max() if optimum["beyond"] == "above" else inner.min()) if len(inner) else edge
        if max(edge / neighbour, neighbour / edge) <= BRACKET_STEP**2:
            return None
        lr = float(math.sqrt(edge * neighbour))
    failures = sum(trial_lr(t, lr_param) == lr for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
    return None if lr in set(observations["lr"]) or failures > MAX_RETRIES else lr


def _own_optimum(study: optuna.Study) -> tuple[pd.DataFrame, dict[str, object]]:
    """The rung's finished runs, and its optimum as its own sweep measures it (what the law uses)."""
    try:
        observations = observations_from_study(study)
    except ValueError:  # no finished trial says anything about the optimum (e.g. all pruned)
        return pd.DataFrame({"lr": [], "loss": [], "diverged": []}), {}
    return observations, estimate_optima(observations).iloc[0].to_dict()


def _summary(study: optuna.Study, rung: AnyRung, prior: LRPrediction | None) -> dict[str, object]:
    observations, optimum = _own_optimum(study)
    best = observations[~observations["diverged"].astype(bool)].nsmallest(1, "loss")
    prior_lo, prior_hi = prior.interval(0.9) if prior else (math.nan, math.nan)
    finished = _trials(study, *FINISHED_STATES)
    runs = [t for t in finished if t.state in RUN_STATES]
    scale = rung.scale()
    cost = study_cost(study, rung)
    return {
        "rung": rung.name,
        "study": study.study_name,
        "params": scale.params,
        "tokens": scale.tokens,
        "batch_tokens": scale.batch_tokens,
        "prior_lr": prior.lr if prior else math.nan,
        "prior_lo": prior_lo,
        "prior_hi": prior_hi,
        "trials": len(runs),
        "pruned": sum(t.state == TrialState.PRUNED for t in runs),
        "diverged": sum(bool(t.user_attrs.get(DIVERGED_ATTR)) for t in finished),
        "failed": sum(t.state == TrialState.FAIL and not t.user_attrs.get(DIVERGED_ATTR) for t in finished),
        "best_lr": float(best["lr"].iloc[0]) if len(best) else math.nan,
        "best_loss": float(best["loss"].iloc[0]) if len(best) else math.nan,
        "lr_star": optimum.get("lr", math.nan),
        "lr_lo": optimum.get("lr_lo", math.nan),
        "lr_hi": optimum.get("lr_hi", math.nan),
        "bracketed": bool(optimum.get("bracketed", False)),
        "flops": cost["flops"],
        "wall_seconds": cost["wall_seconds"],
    }


def study_cost(study: optuna.Study, rung: AnyRung) -> dict[str, float]:
    """What a study of ``rung`` has spent: its finished ``trials`` (failed ones included, surplus
    ones not: they trained nothing), their ``flops`` and ``wall_seconds``."""
    trials = _trials(study, *FINISHED_STATES)
    return {
        "trials": len(trials),
        "flops": sum(trial_flops(t, rung) for t in trials),
        "wall_seconds": sum(trial_seconds(t) for t in trials),
    }


def trial_seconds(trial: FrozenTrial) -> float:
    """A finished run's wall time, start to end (0 if it never recorded both)."""
    if trial.datetime_complete and trial.datetime_start:
        return (trial.datetime_complete - trial.datetime_start).total_seconds()
    return 0.0


def trial_flops(trial: FrozenTrial, rung: AnyRung) -> float:
    """A finished run's FLOPs as it recorded them; a pruned run's up to its last reported step."""
    if "flops" in trial.user_attrs:
        return float(trial.user_attrs["flops"])
    return float(rung.step_flops() * (trial.last_step or 0))


def json_records(table: pd.DataFrame) -> list[dict]:
    """A table's rows as JSON-ready dicts (NaN as None)."""
    return table.astype(object).where(table.notna(), None).to_dict(orient="records")
