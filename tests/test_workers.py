"""Four worker processes on one study in a file-based storage: no trial lost, no LR repeated."""

import subprocess
import sys
import textwrap

import optuna
import pytest

from optuna_lrlaw.ladder import DONE_ATTR
from optuna_lrlaw.ladder.run import BRACKET_TRIALS, SURPLUS_ATTR

WORKER = textwrap.dedent(
    """
    import math, sys, warnings
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna_lrlaw import LRLawSampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore")
    storage = JournalStorage(JournalFileBackend(sys.argv[1]))
    # Every worker uses the same seed: draws differ because they depend on the trial number.
    study = optuna.load_study(study_name="shared", storage=storage, sampler=LRLawSampler(seed=0))

    def objective(trial):
        lr = trial.suggest_float("lr", 1e-6, 1.0, log=True)
        u = math.log(lr / 3e-3)
        return math.inf if u > 2.5 else 2.5 + 0.02 * (math.expm1(u) - u)

    study.optimize(objective, n_trials=int(sys.argv[2]))
    """
)


def test_four_processes_share_one_study(tmp_path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = str(tmp_path / "journal.log")
    optuna.create_study(study_name="shared", storage=JournalStorage(JournalFileBackend(path)))
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, path, "8"]) for _ in range(4)]
    assert [w.wait(timeout=600) for w in workers] == [0, 0, 0, 0]

    trials = optuna.load_study(study_name="shared", storage=JournalStorage(JournalFileBackend(path))).trials
    assert len(trials) == 32
    assert all(t.state.is_finished() for t in trials)
    lrs = [t.params["lr"] for t in trials]
    assert len(set(lrs)) == len(lrs)


LADDER_WORKER = textwrap.dedent(
    """
    import math, sys, time, warnings
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna_lrlaw import Scale
    from optuna_lrlaw.ladder import TrainerRung, run_ladder

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore")
    url = sys.argv[1]
    storage = JournalStorage(JournalFileBackend(url[len("journal:"):])) if url.startswith("journal:") else url

    def trainer(n):
        def train(lr, trial):
            time.sleep(0.3)  # long enough for the workers' trials to overlap
            return 3.0 + 0.05 * math.log(lr / (3e-3 * (n / 1e4) ** -0.5)) ** 2
        return train

    rungs = [TrainerRung(f"mine-{n:g}", Scale(params=n, tokens=20 * n), trainer(n)) for n in (1e4, 4e4)]
    run_ladder(rungs, storage=storage, trials=4, max_expected_regret=1e-12, seed=int(sys.argv[2]))
    """
)


@pytest.mark.parametrize("backend", ["sqlite", "journal"])
def test_four_ladder_workers_share_each_rungs_budget(tmp_path, backend):
    """Four `run_ladder` processes started together on an empty storage: every rung ends with
    exactly its 4 searched runs plus its bracketing runs, no LR trained twice, no crash."""
    url = f"sqlite:///{tmp_path / 'ladder.db'}" if backend == "sqlite" else f"journal:{tmp_path / 'ladder.log'}"
    workers = [
        subprocess.Popen([sys.executable, "-c", LADDER_WORKER, url, str(seed)], stderr=subprocess.PIPE, text=True)
        for seed in range(4)
    ]
    errors = [w.communicate(timeout=600)[1] for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0, 0], errors

    if backend == "sqlite":
        storage = url
    else:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        storage = JournalStorage(JournalFileBackend(str(tmp_path / "ladder.log")))
    for rung in ("mine-10000", "mine-40000"):
        study = optuna.load_study(study_name=f"ladder/{rung}", storage=storage)
        runs = [t for t in study.trials if t.state.is_finished() and not t.user_attrs.get(SURPLUS_ATTR)]
        assert all(t.state == optuna.trial.TrialState.COMPLETE for t in runs)
        searched = [t for t in runs if "fixed_params" not in t.system_attrs]
        bracketing = [t for t in runs if "fixed_params" in t.system_attrs]
        assert len(searched) == 4 and len(bracketing) <= BRACKET_TRIALS
        lrs = [t.params["lr"] for t in runs]
        assert len(set(lrs)) == len(lrs)
        surplus = [t for t in study.trials if t.user_attrs.get(SURPLUS_ATTR)]
        assert all(t.state == optuna.trial.TrialState.PRUNED and not t.params for t in surplus)
        assert study.user_attrs[DONE_ATTR] is True
