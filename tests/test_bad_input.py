"""Bad input, one row per kind: one clear line on stderr, exit code 2, no traceback, nothing written."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import optuna
import pandas as pd
import pytest

from optuna_lrlaw import LRLawSampler

GOOD = {"params": [1e7] * 4, "tokens": [1e9] * 4, "lr": [1e-3, 2e-3, 4e-3, 8e-3], "loss": [2.6, 2.5, 2.45, 2.7]}


def write_runs(folder: Path, name: str, change=None, encoding: str = "utf-8") -> str:
    frame = pd.DataFrame(GOOD)
    if change is not None:
        frame = change(frame)
    path = folder / name
    path.write_text(
        frame.to_csv(index=False).replace("2.7", "2.7é" if encoding != "utf-8" else "2.7"), encoding=encoding
    )
    return str(path)


CASES = {
    "unknown storage scheme": (["ladder", "--storage", "foo://bar"], "cannot open storage 'foo://bar'"),
    "storage not a URL": (["ladder", "--storage", "just-a-file.db"], "is not a URL"),
    "sqlite folder missing": (["ladder", "--storage", "sqlite:///missing/x.db"], "does not exist"),
    "sqlite file not a database": (["ladder", "--storage", "sqlite:///notes.db"], "is not an SQLite database"),
    "sqlite path is a folder": (["ladder", "--storage", "sqlite:///folder"], "is a folder"),
    "head dim zero": (["ladder", "--head-dim", "0"], "head_dim must be a positive integer"),
    "batch size zero": (["ladder", "--batch-size", "0"], "batch_size must be a positive integer"),
    "sequence length zero": (["ladder", "--seq-len", "0"], "seq_len must be a positive integer"),
    "unknown device": (["ladder", "--device", "tpu"], "unknown device 'tpu'"),
    "foreign device": (["ladder", "--device", "xla"], "trains on cpu or cuda"),
    "compare storage not a URL": (["compare", "--storage", "just-a-file.db"], "is not a URL"),
    "compare unknown preset": (["compare", "--preset", "laptop"], "preset must be one of cpu, gpu"),
    "report unknown storage scheme": (["report", "foo://bar"], "cannot open storage"),
    "report no such ladder": (["report", "sqlite:///empty.db", "--name", "nope"], "no rung of a ladder called 'nope'"),
    "target key twice": (["fit", "{runs}", "--target", "params=1e9,params=2e9,tokens=1e10"], "params is given twice"),
    "target without tokens": (["fit", "{runs}", "--target", "params=1e9"], "needs params=... and tokens=..."),
    "LR far out of range": (["fit", "{huge_lr}", "--target", "params=1e8,tokens=1e10"], "is not a learning rate"),
    "negative loss": (["fit", "{negative}", "--target", "params=1e8,tokens=1e10"], "is not positive"),
    "repeated row": (["fit", "{repeated}", "--target", "params=1e8,tokens=1e10"], "repeats an earlier row"),
    "not UTF-8": (["fit", "{latin1}", "--target", "params=1e8,tokens=1e10"], "not UTF-8"),
    "missing runs file": (["fit", "missing.csv", "--target", "params=1e8,tokens=1e10"], "missing.csv"),
}


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "notes.db").write_text("not a database")
    (tmp_path / "folder").mkdir()
    sqlite3 = pytest.importorskip("sqlite3")
    sqlite3.connect(tmp_path / "empty.db").close()
    files = {
        "runs": write_runs(tmp_path, "runs.csv"),
        "huge_lr": write_runs(tmp_path, "huge.csv", lambda f: f.assign(lr=f["lr"] * 1e300)),
        "negative": write_runs(tmp_path, "negative.csv", lambda f: f.assign(loss=f["loss"] - 3)),
        "repeated": write_runs(tmp_path, "repeated.csv", lambda f: pd.concat([f, f.iloc[[1]]])),
        "latin1": write_runs(tmp_path, "latin1.csv", encoding="latin-1"),
    }
    return tmp_path, files


@pytest.mark.parametrize("case", list(CASES))
def test_bad_cli_input_is_one_clear_line(case, workdir):
    folder, files = workdir
    args, message = CASES[case]
    before = sorted(p.name for p in folder.iterdir())
    done = subprocess.run(
        [sys.executable, "-c", "from optuna_lrlaw.cli import main; main()", *(a.format(**files) for a in args)],
        capture_output=True,
        text=True,
        cwd=folder,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert message in done.stderr, done.stderr
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written


def test_a_device_this_machine_lacks_is_refused_before_anything_is_written(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    done = subprocess.run(
        [sys.executable, "-c", "from optuna_lrlaw.cli import main; main()", "ladder", "--device", "cuda"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 2 and "no CUDA GPU" in done.stderr and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_sampler_warns_when_its_lr_param_never_appears():
    study = optuna.create_study(sampler=LRLawSampler(seed=0))
    with pytest.warns(UserWarning, match="looks for the learning rate under 'lr'.*\\['learning_rate'\\]"):
        study.optimize(lambda t: t.suggest_float("learning_rate", 1e-4, 1e-1, log=True), n_trials=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = optuna.create_study(sampler=LRLawSampler(seed=0))
        again.optimize(lambda t: 2.0 + (t.suggest_float("lr", 1e-4, 1e-1, log=True) - 3e-3) ** 2, n_trials=2)
