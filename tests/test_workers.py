"""Four worker processes on one study in a file-based storage: no trial lost, no LR repeated."""

import subprocess
import sys
import textwrap

import optuna

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
        return math.nan if u > 2.5 else 2.5 + 0.02 * (math.expm1(u) - u)

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
