"""``run_ladder(jobs=K)`` and ``optuna-lrlaw ladder --jobs K``: helper processes of this machine
join the climb as further workers; each rung's budget stays exact and every run is reported."""

import signal

import optuna
import pytest
import torch
from test_workers import _check_rung
from tiny import TRAINING, long_rungs

from optuna_lrlaw import Scale
from optuna_lrlaw.ladder import LadderEvents, TrainerRung, run_ladder
from optuna_lrlaw.ladder._jobs import helpers
from optuna_lrlaw.ladder.run import SURPLUS_ATTR, WORKER_ATTR
from optuna_lrlaw.proxies.concurrency import default_jobs, threads_per_job, usable_cores

CPU = torch.device("cpu")


class Reported(LadderEvents):
    def __init__(self) -> None:
        self.trials: dict[str, list[int]] = {}

    def trial_finished(self, index, rung, trial) -> None:
        self.trials.setdefault(rung.name, []).append(trial.number)


def test_two_jobs_climb_one_ladder_with_exact_budgets(tmp_path, code_corpus):
    """Two jobs on one SQLite file: each rung exactly its 4 searched runs (plus bracketing),
    no LR twice, runs from both processes, and the calling process reports every run once."""
    storage = f"sqlite:///{tmp_path / 'jobs.db'}"
    events = Reported()
    rungs = long_rungs()  # runs of several seconds: the helper joins while the first rung runs
    result = run_ladder(rungs, storage=storage, trials=4, jobs=2, events=events, corpus=code_corpus, **TRAINING)

    workers = set()
    for rung in rungs:
        study = optuna.load_study(study_name=f"ladder/{rung.name}", storage=storage)
        runs = _check_rung(study, budget=4)
        workers |= {t.user_attrs[WORKER_ATTR] for t in runs}
        shown = [t.number for t in study.trials if t.state.is_finished() and not t.user_attrs.get(SURPLUS_ATTR)]
        assert sorted(events.trials[rung.name]) == sorted(shown)
    assert len(workers) == 2
    assert list(result.rungs["rung"]) == [rung.name for rung in rungs] and result.law is not None


def test_jobs_need_a_storage_the_helpers_can_open(code_corpus):
    rungs = long_rungs()
    with pytest.raises(ValueError, match="give its URL"):
        run_ladder(rungs, storage=optuna.storages.InMemoryStorage(), jobs=2, corpus=code_corpus, **TRAINING)


def test_jobs_refuse_a_trainer_they_cannot_send_to_a_helper(tmp_path):
    def train(lr, trial):  # a local function: no other process can import it
        return 3.0

    rungs = [TrainerRung("mine", Scale(params=1e4, tokens=2e5), train)]
    with pytest.raises(ValueError, match="picklable"):
        run_ladder(rungs, storage=f"sqlite:///{tmp_path / 'x.db'}", jobs=2)
    with pytest.raises(ValueError, match="jobs must be"):
        run_ladder(rungs, storage=f"sqlite:///{tmp_path / 'x.db'}", jobs=0)


def test_a_failed_helper_is_reported_with_its_error(tmp_path):
    arguments = {"storage": f"sqlite:///{tmp_path / 'x.db'}", "rungs": ["not a rung"]}
    with (
        pytest.warns(RuntimeWarning, match=r"helper job .* failed.*AttributeError"),
        helpers(1, run_ladder, arguments, threads=1),
    ):
        pass


def test_helpers_are_stopped_when_the_climb_fails(tmp_path, code_corpus):
    arguments = {"storage": f"sqlite:///{tmp_path / 'x.db'}", "rungs": long_rungs(), "trials": 50}
    with (
        pytest.raises(KeyboardInterrupt),
        helpers(1, run_ladder, arguments | {"corpus": code_corpus, **TRAINING}, threads=1) as processes,
    ):
        raise KeyboardInterrupt
    assert [p.returncode for p in processes] == [-signal.SIGTERM]


def test_the_default_is_one_job_on_a_cpu_with_its_cores_as_threads():
    assert default_jobs(CPU, trials=6, run_memory=10**6) == 1
    assert threads_per_job(CPU, 2) == max(1, usable_cores() // 2)
    assert threads_per_job(torch.device("cuda"), 2) is None
