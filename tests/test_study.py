import math

import optuna
import pytest

from optuna_lrlaw import DIVERGED_ATTR, Scale, observations_from_storage, observations_from_study, set_study_scale

optuna.logging.set_verbosity(optuna.logging.WARNING)


def finished_study(storage, name, scale):
    study = optuna.create_study(storage=storage, study_name=name)
    set_study_scale(study, scale)
    for lr, value in [(1e-3, 3.0), (2e-3, 2.9), (4e-3, 2.95)]:
        study.enqueue_trial({"lr": lr})
        study.optimize(lambda t, v=value: (t.suggest_float("lr", 1e-5, 1e-1, log=True), v)[1], n_trials=1)
    # A diverged run (failed with the flag), a pruned one, and one whose loss is NaN, which
    # Optuna records as a plain failure: only the flagged failure is a censored run; the
    # plain failure (no reason to blame the LR) and the pruned trial are skipped.
    trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True)})
    trial.set_user_attr(DIVERGED_ATTR, True)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True)})
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True)})
    with pytest.warns(UserWarning, match="nan"):
        study.tell(trial, math.nan)
    return study


def test_reads_trials_with_the_study_scale(tmp_path):
    storage = f"sqlite:///{tmp_path / 'runs.db'}"
    study = finished_study(storage, "small", Scale(1e8, 2e9))
    frame = observations_from_study(study)
    assert len(frame) == 4  # three complete, the flagged failure
    assert frame["diverged"].sum() == 1
    assert set(frame["params"]) == {1e8} and set(frame["tokens"]) == {2e9}
    assert frame[~frame["diverged"]]["loss"].tolist() == [3.0, 2.9, 2.95]


def test_reads_every_study_with_a_scale_from_storage(tmp_path):
    storage = f"sqlite:///{tmp_path / 'runs.db'}"
    finished_study(storage, "small", Scale(1e8, 2e9))
    finished_study(storage, "large", Scale(4e8, 8e9, batch_tokens=2**20))
    optuna.create_study(storage=storage, study_name="unrelated")
    frame = observations_from_storage(storage)
    assert set(frame["study"]) == {"small", "large"}
    assert frame.loc[frame["study"] == "large", "batch_tokens"].eq(2**20).all()


def test_trial_without_scale_and_multi_objective_are_errors():
    study = optuna.create_study()
    study.enqueue_trial({"lr": 1e-3})
    study.optimize(lambda t: t.suggest_float("lr", 1e-5, 1e-1), n_trials=1)
    with pytest.raises(ValueError, match="has no scale"):
        observations_from_study(study)
    with pytest.raises(ValueError, match="multi-objective"):
        observations_from_study(optuna.create_study(directions=["minimize", "minimize"]))


def test_a_failure_that_is_not_divergence_is_retried_and_not_counted(tmp_path):
    """A rung whose objective fails once for a reason unrelated to the LR (a missing file)
    and once returns NaN: neither failure is a diverged run or uses the rung's budget; the
    ladder, rerun, trains the missing runs."""
    from optuna_lrlaw.ladder import TrainerRung, run_ladder

    calls = {"n": 0}

    def train(lr: float, trial: optuna.Trial) -> float:
        calls["n"] += 1
        if calls["n"] == 2:
            raise FileNotFoundError("corpus.bin")
        return 3.0 + 0.05 * math.log(lr / 3e-3) ** 2

    rung = TrainerRung("mine", Scale(1e4, 2e5), train)
    storage = f"sqlite:///{tmp_path / 'fail.db'}"
    with pytest.raises(FileNotFoundError):
        run_ladder([rung], storage=storage, trials=4)
    result = run_ladder([rung], storage=storage, trials=4)
    study = optuna.load_study(study_name="ladder/mine", storage=storage)
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.FAIL) == 1
    row = result.rungs.iloc[0]
    assert row["trials"] >= 4 and row["failed"] == 1 and row["diverged"] == 0
    assert len(observations_from_study(study)) == row["trials"]


def test_a_dead_workers_trial_is_failed_and_retried(tmp_path):
    """A trial whose worker stopped beating is failed by the next worker and enqueued again
    with the same LR; the retry runs, and the failure is neither a run nor a divergence."""
    import time

    from optuna_lrlaw.integration.study import open_storage

    url = f"sqlite:///{tmp_path / 'beats.db'}"
    dead = optuna.create_study(storage=open_storage(url, heartbeat_seconds=1, stale_seconds=1), study_name="rung")
    set_study_scale(dead, Scale(1e8, 2e9))
    dead.enqueue_trial({"lr": 2e-3})
    trial = dead.ask()  # a worker takes the trial, beats once, and is killed
    dead._storage.record_heartbeat(trial._trial_id)
    time.sleep(2.5)
    alive = optuna.load_study(storage=open_storage(url, heartbeat_seconds=1, stale_seconds=1), study_name="rung")
    alive.optimize(lambda t: 3.0 + t.suggest_float("lr", 1e-4, 1e-1, log=True), n_trials=1)
    first, retry = alive.trials
    assert first.state == optuna.trial.TrialState.FAIL
    assert retry.state == optuna.trial.TrialState.COMPLETE and retry.params["lr"] == 2e-3
    assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(retry) == first.number
    frame = observations_from_study(alive)
    assert len(frame) == 1 and not frame["diverged"].any()


@pytest.mark.parametrize(
    "race",
    [
        "(sqlite3.IntegrityError) UNIQUE constraint failed: alembic_version.version_num",
        "(sqlite3.OperationalError) table studies already exists",
        '(psycopg.errors.UniqueViolation) duplicate key value violates unique constraint "pg_type_typname_nsp_index"',
        "(pymysql.err.IntegrityError) (1062, \"Duplicate entry 'v3.2.0.a' for key 'PRIMARY'\")",
        "(pymysql.err.OperationalError) (1050, \"Table 'studies' already exists\")",
    ],
)
def test_a_worker_that_loses_the_race_to_create_the_tables_opens_the_winners(tmp_path, monkeypatch, race):
    """Workers started together on an empty database race to create its tables; each
    database words the loser's error its own way (these are the messages seen on SQLite,
    PostgreSQL 15 and MariaDB 10.11). The loser waits and opens what the winner made."""
    from optuna_lrlaw.integration.study import open_storage

    real, calls = optuna.storages.RDBStorage, []

    def racing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError(race)
        return real(*args, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    storage = open_storage(f"sqlite:///{tmp_path / 'race.db'}")
    assert isinstance(storage, real) and len(calls) == 2


def test_an_error_that_is_not_a_race_is_reported_with_the_url(tmp_path, monkeypatch):
    from optuna_lrlaw.integration.study import open_storage

    def refusing(*args, **kwargs):
        raise RuntimeError('(psycopg.OperationalError) password authentication failed for user "lrlaw"')

    monkeypatch.setattr(optuna.storages, "RDBStorage", refusing)
    with pytest.raises(ValueError, match="cannot open storage 'sqlite:///.*': .*password authentication failed"):
        open_storage(f"sqlite:///{tmp_path / 'x.db'}")


def test_the_by_hand_example_learns_from_its_diverged_runs(tmp_path):
    """examples/ladder_by_hand.py: three studies, the law between them; its diverged runs
    return inf, so they censor the optimum instead of failing, and nothing warns."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "ladder_by_hand.py"
    storage = f"sqlite:///{tmp_path / 'by_hand.db'}"
    done = subprocess.run(
        [sys.executable, "-W", "error::UserWarning", str(example), "--storage", storage],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    found = re.findall(r"lr\* ([\d.e-]+) \(truth ([\d.e-]+)\)", done.stdout)
    assert len(found) == 3
    for estimate, truth in found:
        assert abs(math.log(float(estimate) / float(truth))) < 0.25
    trials = [
        t
        for s in optuna.get_all_study_summaries(storage)
        for t in optuna.load_study(study_name=s.study_name, storage=storage).trials
    ]
    assert not any(t.state == optuna.trial.TrialState.FAIL for t in trials)
    assert any(t.user_attrs.get(DIVERGED_ATTR) or t.value == math.inf for t in trials)
