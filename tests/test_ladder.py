"""The scale-up ladder: rungs, the climb, its storage, resuming, and the CLI command."""

import json
import math
import os
from dataclasses import asdict
from pathlib import Path

import optuna
import pandas as pd
import pytest
from tiny import TINY, TRAINING, WIDTHS
from typer.testing import CliRunner

from optuna_lrlaw import Scale, study_scale
from optuna_lrlaw.cli import app
from optuna_lrlaw.integration.study import DIVERGED_ATTR
from optuna_lrlaw.ladder import DONE_ATTR, RUNG_ATTR, LadderEvents, Rung, TrainerRung, default_rungs, run_ladder
from optuna_lrlaw.ladder.run import (
    BRACKET_STEP,
    BRACKET_TRIALS,
    TRAIN_SEED_ATTR,
    _ladder_train_seed,
    load_ladder,
    record_rung,
)
from optuna_lrlaw.proxies import ProxyConfig
from optuna_lrlaw.visualization import publish_to_dashboard


class Recorder(LadderEvents):
    """Records the ladder's events and publishes each finished rung, as docs/figures.md shows."""

    def __init__(self) -> None:
        self.started, self.finished, self.rungs_done, self.notes = [], [], [], []

    def note(self, index, rung, text):
        self.notes.append(text)

    def rung_started(self, index, rung, prior, trials_left):
        self.started.append((index, rung.name, prior, trials_left))

    def trial_finished(self, index, rung, trial):
        self.finished.append((index, trial.number))

    def rung_finished(self, index, rung, study, prior):
        self.rungs_done.append((index, study.study_name, prior))
        publish_to_dashboard(study, prior)


def climb(code_corpus, storage, widths=WIDTHS, **options):
    # The range reaches past where these tiny models diverge, so a rung can always be bracketed.
    settings = {"trials": 8, "lr_range": (1e-4, 1.0), "corpus": code_corpus, **TRAINING, **options}
    return run_ladder(default_rungs(widths, **TINY), storage=storage, **settings)


@pytest.fixture(scope="module")
def climbed(code_corpus, tmp_path_factory):
    """One two-rung ladder climbed in a SQLite storage: (storage, result, events)."""
    storage = f"sqlite:///{tmp_path_factory.mktemp('ladder') / 'ladder.db'}"
    events = Recorder()
    return storage, climb(code_corpus, storage, events=events), events


def test_default_rungs_grow_in_width_with_tokens_in_proportion():
    rungs = default_rungs((64, 32), tokens_per_param=10, seq_len=128, batch_size=32)
    assert [r.model.width for r in rungs] == [32, 64]
    for rung in rungs:
        scale = rung.scale()
        assert scale.tokens % (32 * 128) == 0
        assert 10 * scale.params - 4096 < scale.tokens <= 10 * scale.params
        assert scale.batch_tokens == 32 * 128
    assert {r.model.base_heads for r in default_rungs((32, 64), head_dim=16, parametrization="mup")} == {4}
    assert default_rungs((48, 96), head_dim=48)[0].model.heads == 1  # sp needs no base model
    moe = Rung(ProxyConfig(width=32, depth=1, heads=2, n_experts=4, top_k=2, seq_len=32), tokens=2**12, batch_size=4)
    assert moe.name == "w32-d1-e4k2-D4096" and moe.scale().active_params == moe.model.active_params()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: default_rungs((30,)), "multiples of head_dim"),
        (lambda: default_rungs(()), "multiples of head_dim"),
        (lambda: default_rungs((32,), tokens_per_param=0), "tokens_per_param"),
        (lambda: Rung(ProxyConfig(width=32, depth=1, heads=2, seq_len=32), tokens=10), "less than one batch"),
        (lambda: Rung(ProxyConfig(width=32, depth=1, heads=2, seq_len=32), tokens=2**12, batch_size=0), "batch_size"),
        (lambda: run_ladder([]), "at least one rung"),
        (lambda: run_ladder(default_rungs((16,)), trials=0), "trials"),
        (lambda: default_rungs((32, 32)), "distinct"),
        (lambda: default_rungs((48, 96), head_dim=48, parametrization="mup"), "must divide the base width 64"),
        (lambda: run_ladder(default_rungs((16,)) * 2), "differ in scale"),
    ],
)
def test_bad_ladders_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_the_ladder_climbs_with_the_law_of_the_rungs_below(climbed):
    storage, result, events = climbed
    rungs = default_rungs(WIDTHS, **TINY)
    # One study per rung in the storage, each with its scale, its place and "done".
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
    assert names == list(result.rungs["study"]) == [f"ladder/{rung.name}" for rung in rungs]
    for index, name in enumerate(result.rungs["study"]):
        study = optuna.load_study(study_name=name, storage=storage)
        assert study_scale(study) == rungs[index].scale()
        assert study.user_attrs[RUNG_ATTR]["index"] == index and study.user_attrs[DONE_ATTR]
        assert 1 <= len(study.trials) <= 8 + BRACKET_TRIALS

    # The first rung starts from the wide prior; the second from the law fitted on the first.
    first, second = events.started
    assert first[2] is None and math.isnan(result.rungs.loc[0, "prior_lr"])
    assert second[2] is not None and result.rungs.loc[1, "prior_lr"] == pytest.approx(second[2].lr)
    assert len(events.finished) == result.rungs["trials"].sum()
    # Each rung is announced finished once, with the prior it started from.
    assert [(index, name) for index, name, _ in events.rungs_done] == list(enumerate(result.rungs["study"]))
    assert events.rungs_done[0][2] is None and events.rungs_done[1][2] is second[2]
    assert (result.rungs["flops"] > 0).all() and (result.rungs["best_loss"] < 5.5).all()
    assert result.rungs["bracketed"].all() and (result.rungs["lr_lo"] < result.rungs["lr_star"]).all()
    assert (result.rungs["lr_star"] < result.rungs["lr_hi"]).all()
    # The law on both rungs predicts the next width inside the range searched.
    assert result.law is not None and 1e-4 < result.predict(default_rungs((32,), **TINY)[0].scale()).lr < 1.0


def test_climbing_again_runs_nothing_and_reports_the_same_ladder(climbed, code_corpus):
    storage, result, _ = climbed
    again = Recorder()
    rerun = climb(code_corpus, storage, events=again)
    assert [started[3] for started in again.started] == [0, 0] and not again.finished and not again.rungs_done
    assert rerun.rungs.drop(columns="wall_seconds").equals(result.rungs.drop(columns="wall_seconds"))


def test_a_rung_cut_short_runs_only_its_missing_trials(code_corpus, tmp_path):
    storage = f"sqlite:///{tmp_path / 'ladder.db'}"
    # An interrupted first climb: the rung has 2 trials but was never marked done.
    climb(code_corpus, storage, widths=(16,), trials=2)
    (name,) = (s.study_name for s in optuna.get_all_study_summaries(storage))
    optuna.load_study(study_name=name, storage=storage).set_user_attr(DONE_ATTR, False)
    events = Recorder()
    climb(code_corpus, storage, widths=(16,), trials=3, max_expected_regret=1e-12, events=events)
    assert events.started[0][3] == 1
    # Three trials from the sampler; any more are the rung's bracketing trials (enqueued).
    trials = optuna.load_study(study_name=name, storage=storage).trials
    assert sum("fixed_params" not in t.system_attrs for t in trials) == 3 and len(trials) <= 3 + BRACKET_TRIALS


def test_a_new_ladder_trains_at_its_seed_and_a_worker_joining_it_adopts_that_seed(code_corpus, tmp_path):
    storage = f"sqlite:///{tmp_path / 'ladder.db'}"
    climb(code_corpus, storage, widths=(16,), trials=2, seed=3)
    (name,) = (s.study_name for s in optuna.get_all_study_summaries(storage))
    study = optuna.load_study(study_name=name, storage=storage)
    assert study.user_attrs[TRAIN_SEED_ATTR] == 3
    study.set_user_attr(DONE_ATTR, False)
    # Another worker, started with another seed, runs the missing trial at the ladder's seed.
    with pytest.warns(UserWarning, match="trains at seed 3"):
        climb(code_corpus, storage, widths=(16,), trials=3, seed=5, max_expected_regret=1e-12)
    runs = optuna.load_study(study_name=name, storage=storage).trials
    assert len(runs) >= 3 and {t.user_attrs["lrlaw.train_seed"] for t in runs} == {3}


def test_a_ladder_from_before_the_seed_was_stored_keeps_training_at_the_default_seed(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'old.db'}")
    optuna.create_study(storage=storage, study_name="ladder/w16").add_trial(
        optuna.trial.create_trial(
            params={"lr": 1e-3},
            distributions={"lr": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)},
            value=3.0,
        )
    )
    with pytest.warns(UserWarning, match="trains at seed 0"):
        assert _ladder_train_seed(storage, "ladder/w16", wanted=7) == 0
    assert optuna.load_study(study_name="ladder/w16", storage=storage).user_attrs[TRAIN_SEED_ATTR] == 0


def test_a_trial_left_running_without_heartbeats_is_failed_and_its_run_searched_again(tmp_path, monkeypatch):
    """A trial a worker without heartbeats left running (an older version's) holds no slot of
    the budget once it is older than ``stale_after``: the next climb fails it, with a warning."""
    import time

    rung = TrainerRung("mine", Scale(1e4, 2e5), lambda lr, trial: 3.0 + 0.05 * math.log(lr / 3e-3) ** 2)
    storage = f"sqlite:///{tmp_path / 'zombie.db'}"
    study = optuna.create_study(storage=storage, study_name="ladder/mine")
    record_rung(study, rung, index=0)  # a ladder's rung, whose worker died in its first trial
    study.ask()
    time.sleep(4.5)
    with pytest.warns(UserWarning, match="trial 0 of 'ladder/mine' is marked failed and run again: .*without a heart"):
        result = run_ladder([rung], storage=storage, trials=3, max_expected_regret=1e-12, stale_after=4)
    states = [t.state for t in optuna.load_study(study_name="ladder/mine", storage=storage).trials]
    assert states[0] == optuna.trial.TrialState.FAIL and optuna.trial.TrialState.RUNNING not in states
    assert result.rungs.iloc[0]["trials"] >= 3 and result.rungs.iloc[0]["failed"] == 1


def test_a_trial_of_a_worker_on_a_storage_without_heartbeats_does_not_hang_the_next_climb(tmp_path):
    """A worker on a storage without heartbeats (``run_ladder(storage=RDBStorage(url))``) is
    killed mid-trial: the next climb, on a storage with heartbeats, waits ``stale_after`` for
    it, says so, then fails it and runs its LR again, instead of waiting for ever."""
    import time

    from optuna_lrlaw.ladder.run import HEARTBEAT_ATTR, WORKER_ATTR

    rung = TrainerRung("mine", Scale(1e4, 2e5), lambda lr, trial: 3.0 + 0.05 * math.log(lr / 3e-3) ** 2)
    url = f"sqlite:///{tmp_path / 'silent.db'}"
    study = optuna.create_study(storage=optuna.storages.RDBStorage(url), study_name="ladder/mine")
    record_rung(study, rung, index=0)
    for lr in (1e-3, 3e-3, 9e-3):
        study.enqueue_trial({"lr": lr})
    study.optimize(lambda t: 3.0 + 0.05 * math.log(t.suggest_float("lr", 1e-4, 1e-1, log=True) / 3e-3) ** 2, n_trials=3)
    killed = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)})
    killed.set_user_attr(WORKER_ATTR, "another-host:4242")
    killed.set_user_attr(HEARTBEAT_ATTR, False)
    started = time.monotonic()
    with pytest.warns(UserWarning, match=f"trial {killed.number} .* run again: it has run without a heartbeat"):
        result = run_ladder([rung], storage=url, trials=4, max_expected_regret=1e-12, stale_after=4)
    assert time.monotonic() - started >= 4  # it waited for the silent trial, then went on
    trials = optuna.load_study(study_name="ladder/mine", storage=url).trials
    assert trials[killed.number].state == optuna.trial.TrialState.FAIL
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retried) == 1 and retried[0].params["lr"] == killed.params["lr"]  # the same run, not a new LR
    assert retried[0].state == optuna.trial.TrialState.COMPLETE
    assert optuna.trial.TrialState.RUNNING not in [t.state for t in trials]
    assert result.rungs.iloc[0]["failed"] == 1


def test_a_trial_of_a_local_worker_that_has_ended_is_run_again_at_once(tmp_path):
    """A worker of this machine whose process has ended is not waited for: its trial is
    failed and its LR run again without waiting for its heartbeat to go stale."""
    import socket
    import subprocess
    import sys
    import time

    from optuna_lrlaw.ladder.run import HEARTBEAT_ATTR, WORKER_ATTR

    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    rung = TrainerRung("mine", Scale(1e4, 2e5), lambda lr, trial: 3.0 + 0.05 * math.log(lr / 3e-3) ** 2)
    url = f"sqlite:///{tmp_path / 'ended.db'}"
    study = optuna.create_study(storage=url, study_name="ladder/mine")
    record_rung(study, rung, index=0)
    killed = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)})
    killed.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:{ended.pid}")
    killed.set_user_attr(HEARTBEAT_ATTR, True)
    time.sleep(5.5)  # past the moments in which a retried trial's new worker marks it
    with pytest.warns(UserWarning, match=f"its worker {socket.gethostname()}:{ended.pid} has ended"):
        run_ladder([rung], storage=url, trials=3, max_expected_regret=1e-12)  # stale_after: 120 s
    trials = optuna.load_study(study_name="ladder/mine", storage=url).trials
    assert trials[0].state == optuna.trial.TrialState.FAIL
    assert [t.params["lr"] for t in trials if t.system_attrs.get("failed_trial") == 0] == [killed.params["lr"]]


def test_a_dead_workers_run_keeps_its_slot_between_its_failure_and_its_retry(tmp_path):
    """The worker that fails a dead worker's trial writes the failure, then the retry. A
    worker starting a trial in between finds the rung's budget taken (it used to take the
    slot, and the rung ended with one run too many); the retry then runs. A run that failed
    in its own worker (it raised) frees its slot."""
    from optuna_lrlaw.ladder.run import ENDED_ATTR, SURPLUS_ATTR, WORKER_ATTR, _admitted

    rung = TrainerRung("mine", Scale(1e4, 2e5), lambda lr, trial: 3.0 + 0.05 * math.log(lr / 3e-3) ** 2)
    objective = rung.objective((1e-4, 1e-1))
    searching = _admitted(objective, budget=2)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'slots.db'}", study_name="ladder/mine")
    study.optimize(searching, n_trials=1)
    dead = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)})
    dead.set_user_attr(WORKER_ATTR, "elsewhere:1")  # admitted, then its worker was killed
    study._storage.set_trial_state_values(dead._trial_id, optuna.trial.TrialState.FAIL)

    study.optimize(searching, n_trials=1)  # between the failure and the retry
    assert study.trials[-1].user_attrs.get(SURPLUS_ATTR) is True

    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        optuna.storages.RetryHeartbeatStaleTrialCallback()(study, study.trials[dead.number])
    study.optimize(searching, n_trials=1)
    retry = study.trials[-1]
    assert retry.state == optuna.trial.TrialState.COMPLETE and retry.params == dead.params

    raised = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)})
    raised.set_user_attr(WORKER_ATTR, "here:1")
    raised.set_user_attr(ENDED_ATTR, True)
    study.tell(raised, state=optuna.trial.TrialState.FAIL)
    # Two runs stand; the failed one freed nothing they hold.
    study.optimize(searching, n_trials=1)
    assert study.trials[-1].user_attrs.get(SURPLUS_ATTR) is True
    budget_of_three = _admitted(objective, budget=3)
    study.optimize(budget_of_three, n_trials=1)
    assert study.trials[-1].state == optuna.trial.TrialState.COMPLETE


def test_a_worker_killed_while_bracketing_leaves_a_run_the_next_worker_finishes(tmp_path):
    """A worker dies in the middle of a bracketing run: the next worker, arriving at a rung
    whose search is spent, waits for the dead run to go stale, runs its retry, and goes on
    bracketing; each bracketing LR is run once and the rung ends done."""
    import time

    from optuna_lrlaw.integration.study import open_storage
    from optuna_lrlaw.ladder.run import BRACKET_ATTR, WORKER_ATTR

    def loss(lr: float) -> float:
        return 3.0 + 0.05 * math.log(lr / 3e-3) ** 2

    url = f"sqlite:///{tmp_path / 'bracketing.db'}"
    storage = open_storage(url, heartbeat_seconds=1, stale_seconds=1)
    study = optuna.create_study(storage=storage, study_name="ladder/mine")
    record_rung(study, TrainerRung("mine", Scale(1e4, 2e5), lambda lr, trial: loss(lr)), index=0)
    for lr in (1e-4, 1.4e-4, 2e-4):  # a search far below the optimum: its best run sits at the upper edge
        study.enqueue_trial({"lr": lr})
    study.optimize(lambda t: loss(t.suggest_float("lr", 1e-4, 1e-1, log=True)), n_trials=3)
    study.enqueue_trial({"lr": 2e-4 * BRACKET_STEP}, user_attrs={BRACKET_ATTR: True})
    dying = study.ask()  # a worker takes the bracketing run, beats once, and is killed
    dying.set_user_attr(WORKER_ATTR, "dead-host:1")
    study._storage.record_heartbeat(dying._trial_id)
    time.sleep(2.5)

    rung = TrainerRung("mine", Scale(1e4, 2e5), lambda lr, trial: loss(lr))
    run_ladder([rung], storage=storage, trials=3, max_expected_regret=1e-12)
    trials = optuna.load_study(study_name="ladder/mine", storage=url).trials
    assert trials[3].state == optuna.trial.TrialState.FAIL
    bracketing = [t for t in trials if t.user_attrs.get(BRACKET_ATTR) and t.state.is_finished() and t.number > 3]
    assert [t.params["lr"] for t in bracketing] == pytest.approx([2e-4 * BRACKET_STEP, 2e-4 * BRACKET_STEP**2])
    assert bracketing[0].system_attrs["failed_trial"] == 3
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in bracketing)
    assert len(trials) == 3 + 1 + BRACKET_TRIALS
    assert optuna.load_study(study_name="ladder/mine", storage=url).user_attrs[DONE_ATTR] is True


def test_a_bracketing_lr_that_keeps_failing_is_not_tried_for_ever(tmp_path):
    """A bracketing LR whose run failed more often than a retried run may (it killed its
    worker each time, say) is given up: the rung ends, unbracketed, instead of looping."""
    from optuna_lrlaw.integration.study import MAX_RETRIES
    from optuna_lrlaw.ladder.run import BRACKET_ATTR

    def loss(lr: float) -> float:
        return 3.0 + 0.05 * math.log(lr / 3e-3) ** 2

    url = f"sqlite:///{tmp_path / 'failing.db'}"
    study = optuna.create_study(storage=url, study_name="ladder/mine")
    record_rung(study, TrainerRung("mine", Scale(1e4, 2e5), lambda lr, trial: loss(lr)), index=0)
    for lr in (1e-4, 1.4e-4, 2e-4):
        study.enqueue_trial({"lr": lr})
    study.optimize(lambda t: loss(t.suggest_float("lr", 1e-4, 1e-1, log=True)), n_trials=3)
    for _ in range(MAX_RETRIES + 1):
        study.enqueue_trial({"lr": 2e-4 * BRACKET_STEP}, user_attrs={BRACKET_ATTR: True})
        trial = study.ask()
        trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)

    rung = TrainerRung("mine", Scale(1e4, 2e5), lambda lr, trial: loss(lr))
    result = run_ladder([rung], storage=url, trials=3, max_expected_regret=1e-12)
    trials = optuna.load_study(study_name="ladder/mine", storage=url).trials
    assert len(trials) == 3 + MAX_RETRIES + 1  # nothing more was tried
    assert not result.rungs.iloc[0]["bracketed"] and result.rungs.iloc[0]["failed"] == MAX_RETRIES + 1


def test_a_trial_another_worker_finished_first_ends_quietly(tmp_path):
    """SQLite has no row lock, so two workers may take one waiting trial: the second to
    finish cannot record it, and moves on with a warning instead of crashing. Any other
    error still propagates."""
    from optuna_lrlaw.ladder.run import _optimize

    url = f"sqlite:///{tmp_path / 'twice.db'}"
    study = optuna.create_study(storage=url, study_name="rung")

    def objective(trial: optuna.Trial) -> float:
        # The other worker, training the same run, records it first.
        optuna.load_study(study_name="rung", storage=url).tell(trial.number, 2.5)
        return 2.5

    with pytest.warns(UserWarning, match="another worker finished the same trial first"):
        _optimize(study, objective, n_trials=1)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE]

    def broken(trial: optuna.Trial) -> float:
        raise ValueError("not a race")

    with pytest.raises(ValueError, match="not a race"):
        _optimize(study, broken, n_trials=1)


def test_a_rung_whose_best_run_sits_at_an_edge_steps_past_it(code_corpus, tmp_path):
    storage = f"sqlite:///{tmp_path / 'ladder.db'}"
    (rung,) = default_rungs((16,), **TINY)
    # Three runs far below the optimum (near 1e-2): the best is the highest of them.
    study = optuna.create_study(storage=storage, study_name=f"ladder/{rung.name}")
    record_rung(study, rung, index=0)
    for lr in (1e-4, 1.4e-4, 2e-4):
        study.enqueue_trial({"lr": lr})
    events = Recorder()
    climb(code_corpus, storage, widths=(16,), trials=3, events=events)
    lrs = [t.params["lr"] for t in optuna.load_study(study_name=study.study_name, storage=storage).trials]
    assert lrs == pytest.approx([1e-4, 1.4e-4, 2e-4, 2e-4 * BRACKET_STEP, 2e-4 * BRACKET_STEP**2][: 3 + BRACKET_TRIALS])
    # Still unbracketed (the optimum is ~50x above), it says so: the law leaves the rung out.
    assert any(f"{BRACKET_TRIALS} bracketing run(s) past it" in line for line in events.notes)
    # Where the user's range ends, it stops: the optimum lies outside what may be searched.
    capped = optuna.create_study(storage=storage, study_name=f"capped/{rung.name}")
    record_rung(capped, rung, index=0)
    for lr in (1e-4, 1.4e-4, 2e-4):
        capped.enqueue_trial({"lr": lr})
    events = Recorder()
    climb(code_corpus, storage, widths=(16,), trials=3, name="capped", lr_range=(1e-4, 2e-4), events=events)
    assert len(optuna.load_study(study_name=capped.study_name, storage=storage).trials) == 3
    (line,) = [line for line in events.notes if "optimum lies above" in line]
    assert "the LR range searched ends there (lr_range 0.0001 to 0.0002): widen it" in line


def test_ladders_sharing_a_storage_keep_their_laws_apart(climbed, code_corpus):
    storage, _, _ = climbed
    events = Recorder()
    # "other" climbs the widest rung of "ladder" anew: the rungs of "ladder" are no law to it.
    climb(code_corpus, storage, widths=(24,), trials=1, name="other", events=events)
    assert events.started[0][2] is None


def test_a_ladder_of_other_models_under_the_same_name_is_refused(climbed, code_corpus):
    storage, _, _ = climbed
    mup = default_rungs(WIDTHS, **TINY, parametrization="mup")
    with pytest.raises(ValueError, match="parametrization: 'sp' stored, 'mup' now"):
        run_ladder(mup, storage=storage, trials=1, corpus=code_corpus, **TRAINING)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"corpus": None}, "corpus: '"),  # the built-in corpus instead of the climbed one
        ({"schedule": "wsd"}, "schedule: 'linear' stored, 'wsd' now"),
        ({"warmup_fraction": 0.1}, "warmup_fraction: 0.05 stored, 0.1 now"),
    ],
    ids=["another corpus", "another schedule", "another warmup"],
)
def test_a_ladder_resumed_with_other_training_settings_is_refused(climbed, code_corpus, change, named):
    """A rung's runs are its model trained one way on one corpus: a resume that would train
    the rest another way (another --corpus, schedule, ...) is refused before it trains, with
    the setting that differs."""
    storage, _, _ = climbed
    before = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}
    options = {"trials": 9, "lr_range": (1e-4, 1.0), "corpus": code_corpus, **TRAINING, **change}
    with pytest.raises(ValueError, match=f"holds runs of another rung .*{named}"):
        run_ladder(default_rungs(WIDTHS, **TINY), storage=storage, **options)
    assert {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)} == before


def test_a_study_named_like_a_rung_but_not_made_by_a_ladder_is_refused(tmp_path):
    """Trials another program left in a study with a rung's name are not this rung's runs."""
    rung = TrainerRung("mine", Scale(1e4, 2e5), lambda lr, trial: 3.0 + 0.05 * math.log(lr / 3e-3) ** 2)
    storage = f"sqlite:///{tmp_path / 'foreign.db'}"
    foreign = optuna.create_study(storage=storage, study_name="ladder/mine")
    foreign.optimize(lambda t: 10.3 + t.suggest_float("x", 0, 1), n_trials=6)
    with pytest.raises(ValueError, match="'ladder/mine' holds 6 trial\\(s\\) that no ladder recorded"):
        run_ladder([rung], storage=storage, trials=3)
    assert len(optuna.load_study(study_name="ladder/mine", storage=storage).trials) == 6


def test_a_database_of_another_application_is_refused_unless_given_as_a_storage(tmp_path):
    """A ladder does not write Optuna's tables beside another application's; a storage object
    built by the user is the way to share a database on purpose."""
    import sqlite3

    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as connection:
        connection.execute("create table invoices (id integer)")
    rung = TrainerRung("mine", Scale(1e4, 2e5), lambda lr, trial: 3.0 + 0.05 * math.log(lr / 3e-3) ** 2)
    with pytest.raises(ValueError, match="holds tables of another application \\(invoices\\)"):
        run_ladder([rung], storage=f"sqlite:///{path}", trials=3)
    with sqlite3.connect(path) as connection:
        tables = {row[0] for row in connection.execute("select name from sqlite_master where type = 'table'")}
    assert tables == {"invoices"}  # nothing written
    result = run_ladder([rung], storage=optuna.storages.RDBStorage(f"sqlite:///{path}"), trials=3)
    assert result.rungs.iloc[0]["trials"] >= 3


@pytest.mark.parametrize(("parametrization", "refused"), [("mup", True), ("completep", True), ("sp", False)])
def test_a_rung_stored_under_older_parametrization_rules_is_refused(parametrization, refused):
    """Rules version 1 (before the MuReadout readout, the base head size and the output-like
    router) stored no version and no ``base_heads``; sp's rules did not change."""
    rung = default_rungs(WIDTHS, **TINY, parametrization=parametrization)[-1]
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    old_model = {key: value for key, value in asdict(rung.model).items() if key != "base_heads"}
    study.set_user_attr(RUNG_ATTR, {"index": 1, "model": old_model, "batch_size": rung.batch_size})
    if refused:
        with pytest.raises(ValueError, match=r"rules: 1 stored, 2 now.*rules changed"):
            record_rung(study, rung)
    else:
        record_rung(study, rung)
        assert study.user_attrs[RUNG_ATTR]["rules"] == 1


def test_the_ladder_command_reports_rungs_and_a_prediction(climbed, code_corpus):
    storage, result, _ = climbed
    # The command with the climbed ladder's options reads it back from the storage.
    args = ["ladder", "--storage", storage, "--widths", "16,24", "--depth", "1", "--head-dim", "8", "--trials", "8"]
    args += [
        "--seq-len",
        "32",
        "--batch-size",
        "8",
        "--tokens-per-param",
        "8",
        "--device",
        "cpu",
        "--corpus",
        code_corpus,
    ]
    args += ["--target-width", "32"]
    report = CliRunner().invoke(app, [*args, "--json"])
    assert report.exit_code == 0, report.output
    payload = json.loads(report.stdout.strip().splitlines()[-1])
    assert [row["rung"] for row in payload["rungs"]] == list(result.rungs["rung"])
    assert [row["lr_star"] for row in payload["rungs"]] == pytest.approx(list(result.rungs["lr_star"]))
    target = payload["target"]
    expected = result.predict(default_rungs((32,), **TINY)[0].scale())
    assert target["rung"] == default_rungs((32,), **TINY)[0].name
    assert target["lr"] == pytest.approx(expected.lr) and target["lo90"] < target["lr"] < target["hi90"]
    tables = CliRunner().invoke(app, args)
    assert tables.exit_code == 0, tables.output
    assert "Scale-up ladder" in tables.stdout and f"{expected.lr:.3g}" in tables.stdout
    # The answer reaches optuna-dashboard too: the top rung shows the law and the target's LR.
    dashboard = pytest.importorskip("optuna_dashboard")
    from optuna_dashboard._custom_plot_data import get_plotly_graph_objects

    top = optuna.load_study(study_name=result.rungs["study"].iloc[-1], storage=storage)
    note = dashboard.get_note(top)
    assert "## The law of every rung" in note and f"**Optimal peak LR**: {expected.lr:.3g}" in note
    assert "lrlaw-law" in get_plotly_graph_objects(top._storage.get_study_system_attrs(top._study_id))


def test_the_ladder_command_refuses_bad_widths(tmp_path):
    result = CliRunner().invoke(app, ["ladder", "--widths", "16,x", "--storage", f"sqlite:///{tmp_path / 'x.db'}"])
    assert result.exit_code != 0 and "--widths" in str(result.exception)


@pytest.fixture(scope="module")
def untouched(code_corpus, tmp_path_factory):
    """A climbed ladder no other test writes to: (storage, result)."""
    storage = f"sqlite:///{tmp_path_factory.mktemp('untouched') / 'ladder.db'}"
    return storage, climb(code_corpus, storage)


def test_a_climbed_ladder_reads_back_from_storage_without_training(untouched):
    storage, result = untouched
    loaded, studies = load_ladder(storage)
    assert [s.study_name for s in studies] == list(result.rungs["study"])
    columns = ["rung", "params", "tokens", "trials", "best_lr", "best_loss", "lr_star", "flops"]
    pd.testing.assert_frame_equal(loaded.rungs[columns], result.rungs[columns])
    target = Scale(1e5, 1e6)
    assert loaded.predict(target).lr == pytest.approx(result.predict(target).lr)
    with pytest.raises(ValueError, match="no rung of a ladder called 'other'"):
        load_ladder(storage, "other")


def test_the_report_is_one_offline_html_page_with_the_table_and_figures(untouched, tmp_path):
    pytest.importorskip("plotly")
    storage, result = untouched
    out = tmp_path / "report.html"
    done = CliRunner().invoke(app, ["report", storage, "--out", str(out), "--target", "params=1e5,tokens=1e6"])
    assert done.exit_code == 0, done.output
    page = out.read_text()
    assert page.count("<script") >= 1 and 'src="http' not in page  # plotly.js inlined: no script from the web
    assert page.count("Plotly.newPlot") == 1 + 2 * len(result.rungs)  # the law, each rung's sweep and belief
    for rung in result.rungs["rung"]:
        assert rung in page
    assert "One-shot LR (the law's median)" in page and "<th>optimum found</th>" in page
    assert "<title>optuna-lrlaw: Scale-up ladder" in page and "Ladder ladder" not in page
    # Without --target, a ladder that stored none says how to get the answer.
    CliRunner().invoke(app, ["report", storage, "--out", str(out)])
    assert "No target stored with this ladder" in out.read_text()


def test_a_ladder_with_nothing_finished_has_no_report(tmp_path):
    from optuna_lrlaw.visualization import ladder_report

    def crash(lr, trial):
        raise RuntimeError("the trainer fails")

    storage = f"sqlite:///{tmp_path / 'failed.db'}"
    with pytest.raises(RuntimeError):
        run_ladder([TrainerRung("crashes", Scale(1e4, 1e5), crash)], storage=storage, trials=2)
    with pytest.raises(ValueError, match="no finished trial yet"):
        ladder_report(storage)


def test_a_ladder_given_its_target_stores_it_and_its_report_leads_with_the_answer(tmp_path):
    pytest.importorskip("plotly")
    from optuna_lrlaw.visualization import ladder_report

    storage = f"sqlite:///{tmp_path / 'target.db'}"
    target = TrainerRung("mine-big", Scale(params=1e6, tokens=2e7), analytic_train(1e6))
    result = run_ladder(trainer_rungs(), storage=storage, trials=6, target=target)
    assert result.target == (target.name, target.scale())
    loaded, _ = load_ladder(storage)
    assert loaded.target == result.target
    page = ladder_report(storage)
    prediction = result.predict(target.scale())
    answer = page.index("For mine-big (N = 1e+06 parameters")
    assert answer < page.index("<h2>The law, through the rungs to the target</h2>") < page.index("<h2>The rungs</h2>")
    assert f"optimal peak LR <b>{prediction.lr:.3g}</b>" in page and "expected regret" in page[answer:]


def test_each_rung_shows_its_figures_and_note_in_optuna_dashboard(climbed):
    dashboard = pytest.importorskip("optuna_dashboard")
    from optuna_dashboard._custom_plot_data import get_plotly_graph_objects

    storage, result, _ = climbed
    for index, name in enumerate(result.rungs["study"]):
        study = optuna.load_study(study_name=name, storage=storage)
        assert study.metric_names == ["validation_loss"]
        figures = get_plotly_graph_objects(study._storage.get_study_system_attrs(study._study_id))
        assert {"lrlaw-sweep", "lrlaw-belief"} <= set(figures)
        sweep = json.loads(figures["lrlaw-sweep"])
        assert sweep["layout"]["xaxis"]["title"]["text"].startswith("peak learning rate")
        # The figure states the optimum the table does (both at the proxies' stated noise).
        row = result.rungs.iloc[index]
        assert (
            f"eta* = {row['lr_star']:.3g}, 90% interval {row['lr_lo']:.3g} to {row['lr_hi']:.3g}"
            in sweep["layout"]["title"]["text"]
        )
        note = dashboard.get_note(study)
        assert "**Posterior**" in note
        assert ("**Prior**: none" in note) == (index == 0) and ("**Recommended LR**" in note) == (index > 0)


def analytic_train(params):
    """A 'trainer' whose loss is a parabola in log LR around 3e-3 * (N / 1e4)^-0.5; diverges far above."""

    def train(lr, trial):
        u = math.log(lr / (3e-3 * (params / 1e4) ** -0.5))
        if u > 2.5:
            return math.nan
        for step in range(3):
            trial.report(3.0 + 0.05 * u**2 + 0.1 * (2 - step), step)
        return 3.0 + 0.05 * u**2

    return train


def trainer_rungs():
    # The analytic curve has no seed noise; the trainer says so (0.1%, the least it states).
    return [
        TrainerRung(f"mine-{n}", Scale(params=n, tokens=20 * n), analytic_train(n), noise=1e-3)
        for n in (1e4, 4e4, 1.6e5)
    ]


def test_a_ladder_climbs_rungs_trained_by_your_own_code(tmp_path):
    storage = f"sqlite:///{tmp_path / 'own.db'}"
    events = Recorder()
    result = run_ladder(trainer_rungs(), storage=storage, trials=6, events=events)
    assert list(result.rungs["rung"]) == ["mine-10000.0", "mine-40000.0", "mine-160000.0"]
    assert result.rungs["bracketed"].all()
    for n, lr_star in zip((1e4, 4e4, 1.6e5), result.rungs["lr_star"], strict=True):
        assert lr_star == pytest.approx(3e-3 * (n / 1e4) ** -0.5, rel=0.2)
    exponent = result.law.coefficients().loc["params", "estimate"]
    assert exponent == pytest.approx(-0.5, abs=0.15)
    study = optuna.load_study(study_name="ladder/mine-40000.0", storage=storage)
    assert study.user_attrs[RUNG_ATTR]["trainer"] == "mine-40000.0"
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert all(t.user_attrs["flops"] == 6 * 4e4 * 20 * 4e4 for t in complete)
    # Resumed: nothing runs again; read back, the same table.
    again = Recorder()
    run_ladder(trainer_rungs(), storage=storage, trials=6, events=again)
    assert again.finished == []
    loaded, _ = load_ladder(storage)
    assert list(loaded.rungs["lr_star"]) == pytest.approx(list(result.rungs["lr_star"]))


def test_a_trainer_rung_reports_divergence_and_refuses_proxy_options(tmp_path):
    rung = trainer_rungs()[0]
    study = optuna.create_study()
    study.enqueue_trial({"lr": 0.5})
    study.optimize(rung.objective((1e-4, 1.0)), n_trials=1)
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.value == math.inf
    assert trial.user_attrs[DIVERGED_ATTR] is True
    with pytest.raises(ValueError, match="options \\['corpus'\\] do not apply"):
        rung.objective((1e-4, 1e-1), corpus="x.bin")
    with pytest.raises(ValueError, match="no '/'"):
        TrainerRung("a/b", Scale(1e4, 1e5), analytic_train(1e4))
    # The same name with another scale is another rung: refused, as for proxies.
    storage = f"sqlite:///{tmp_path / 'clash.db'}"
    run_ladder([rung, trainer_rungs()[1]], storage=storage, trials=3)
    moved = TrainerRung(rung.name, Scale(params=2e4, tokens=2e5), analytic_train(2e4))
    with pytest.raises(ValueError, match="holds runs of another rung"):
        run_ladder([moved, trainer_rungs()[1]], storage=storage, trials=3)


def test_the_own_trainer_example_climbs_and_resumes(tmp_path):
    """examples/own_trainer.py, tiny: three rungs of a user's MLP trained for real; rerun, it
    trains nothing new and prints the same table."""
    import subprocess
    import sys

    example = Path(__file__).resolve().parents[1] / "examples" / "own_trainer.py"
    storage = f"sqlite:///{tmp_path / 'own.db'}"
    command = [sys.executable, str(example), "--storage", storage, "--hidden", "8", "12", "16"]
    command += ["--tokens-per-param", "2", "--trials", "4"]
    first = subprocess.run(command, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert all(f"mlp-h{h}" in first.stdout for h in (8, 12, 16))
    counts = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}
    assert sorted(counts) == [f"own-trainer/mlp-h{h}" for h in (12, 16, 8)]
    second = subprocess.run(command, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)} == counts
    assert second.stdout == first.stdout


@pytest.mark.parametrize("width", [80, 100, 200])
def test_the_ladder_table_fits_the_terminal_by_leaving_out_the_least_wanted_columns(climbed, width):
    from rich.console import Console

    from optuna_lrlaw.cli.ladder import rungs_table

    _, result, _ = climbed
    console = Console(width=width, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(rungs_table(result.rungs, width))
    text = console.export_text()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= width
    for rung, best in zip(result.rungs["rung"], result.rungs["best_lr"], strict=True):
        assert rung in text and f"{best:.3g}" in text  # the rung and its best LR always show
    header = next(line for line in text.splitlines() if "rung" in line and "best lr" in line)
    assert ("FLOPs" in header) == (width >= 200) and ("not shown at this width" in text) == (width < 200)


def test_a_piped_climb_prints_lines_and_no_progress_frames(code_corpus, tmp_path):
    """In a pipe: a line per rung and per trial, why a rung ran fewer trials than it said, no bar."""
    import subprocess
    import sys

    storage = f"sqlite:///{tmp_path / 'piped.db'}"
    args = ["--storage", storage, "--widths", "16", "--depth", "1", "--head-dim", "8", "--trials", "6"]
    args += ["--seq-len", "32", "--batch-size", "8", "--tokens-per-param", "8", "--device", "cpu"]
    args += ["--corpus", code_corpus, "--target-width", "24"]
    code = "import sys; from optuna_lrlaw.cli import main; sys.argv[0] = 'optuna-lrlaw'; main()"
    done = subprocess.run([sys.executable, "-c", code, "ladder", *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0].startswith("rung 1 w16") and "6 trial(s) to run" in lines[0]
    trials = [line for line in lines if line.lstrip().startswith("trial ")]
    assert trials and not any("lr nan" in line for line in trials)
    assert not any(mark in done.stderr for mark in ("━", "\x1b["))  # no bar, no cursor movement
    notes = [at for at, line in enumerate(lines) if line.strip().startswith("ran ")]
    if notes:  # it converged early, and says so right after its last searched trial
        (at,) = notes
        ran = int(lines[at].split()[1])
        assert ran < 6 and sum(line.lstrip().startswith("trial ") for line in lines[:at]) == ran
        assert "converged" in lines[at]
    else:
        assert len(trials) >= 6


def test_a_ladder_of_proxies_reads_one_built_in_corpus_chosen_for_its_largest_rung(monkeypatch):
    """Rungs on different corpora would confound the law: the built-in corpus is chosen once,
    for the largest rung's tokens (`builtin_corpus_for`), unless a corpus is given."""
    import optuna_lrlaw.ladder.run as run_module

    asked = []

    def chosen(tokens):
        asked.append(tokens)
        raise LookupError("stop here")

    monkeypatch.setattr(run_module, "builtin_corpus_for", chosen)
    rungs = default_rungs(WIDTHS, **TINY)
    with pytest.raises(LookupError):
        run_ladder(rungs, storage=optuna.storages.InMemoryStorage(), **TRAINING)
    assert asked == [max(rung.tokens for rung in rungs)]
