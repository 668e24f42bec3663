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
    "report no such file": (["report", "sqlite:///missing.db"], "no SQLite database at missing.db"),
    "target key twice": (["fit", "{runs}", "--target", "params=1e9,params=2e9,tokens=1e10"], "params is given twice"),
    "target without tokens": (["fit", "{runs}", "--target", "params=1e9"], "needs params=... and tokens=..."),
    "LR far out of range": (["fit", "{huge_lr}", "--target", "params=1e8,tokens=1e10"], "is not a learning rate"),
    "negative loss": (["fit", "{negative}", "--target", "params=1e8,tokens=1e10"], "is not positive"),
    "repeated row": (["fit", "{repeated}", "--target", "params=1e8,tokens=1e10"], "repeats an earlier row"),
    "not UTF-8": (["fit", "{latin1}", "--target", "params=1e8,tokens=1e10"], "not UTF-8"),
    "missing runs file": (["fit", "missing.csv", "--target", "params=1e8,tokens=1e10"], "missing.csv"),
    "corpus cut short": (["ladder", "--device", "cpu", "--corpus", "{cut}"], "cut.bin holds 1,000 bytes"),
    "corpus with an odd byte": (["ladder", "--device", "cpu", "--corpus", "{odd}"], "the file was cut or changed"),
    "corpus description not JSON": (["ladder", "--device", "cpu", "--corpus", "{notjson}"], "notjson.json is not"),
    "corpus of floats": (["ladder", "--device", "cpu", "--corpus", "{floats}"], "'float64' is not a token type"),
    "corpus tokens outside its vocabulary": (["ladder", "--device", "cpu", "--corpus", "{vocab}"], "vocabulary of 100"),
    "corpus description without counts": (["compare", "--device", "cpu", "--corpus", "{counts}"], "lacks tokens"),
    "corpus files missing": (["ladder", "--device", "cpu", "--corpus", "nowhere.bin"], "nowhere.val.bin"),
    "prepare: 10 bytes of text": (["data", "prepare", "{ten_bytes}", "--out", "new/c.bin"], "too little text"),
    "prepare: an empty file": (["data", "prepare", "{empty_text}", "--out", "c.bin"], "0 train tokens"),
    "prepare: a folder of nothing": (["data", "prepare", "{empty_folder}", "--out", "c.bin"], "no files matching"),
    "prepare: into a folder": (["data", "prepare", "{text}", "--out", "folder"], "is a folder"),
    "prepare: unknown tokenizer": (["data", "prepare", "{text}", "--out", "c.bin", "--tokenizer", "x"], "tokenizer"),
}


def corrupt_corpora(folder: Path) -> dict[str, str]:
    """A good corpus, and copies of it broken one way each (as a disk or a hand edit breaks them)."""
    import json
    import shutil

    from optuna_lrlaw.proxies import prepare_corpus

    folder.mkdir()
    (folder / "text.txt").write_text("def f(x):\n    return x + 1\n" * 2000)
    good = prepare_corpus(folder / "text.txt", folder / "good.bin").path
    meta = json.loads(good.with_suffix(".json").read_text())
    paths = {}
    for name, edit in {
        "cut": lambda stem: stem.with_suffix(".bin").write_bytes(stem.with_suffix(".bin").read_bytes()[:1000]),
        "odd": lambda stem: stem.with_suffix(".bin").write_bytes(stem.with_suffix(".bin").read_bytes() + b"x"),
        "notjson": lambda stem: stem.with_suffix(".json").write_text("{oops"),
        "floats": lambda stem: stem.with_suffix(".json").write_text(json.dumps({**meta, "dtype": "float64"})),
        "vocab": lambda stem: stem.with_suffix(".json").write_text(json.dumps({**meta, "vocab_size": 100})),
        "counts": lambda stem: stem.with_suffix(".json").write_text(
            json.dumps({k: v for k, v in meta.items() if k != "tokens"})
        ),
    }.items():
        stem = folder / name
        for suffix in (".bin", ".val.bin", ".json"):
            shutil.copy(good.with_name("good" + suffix), folder / (name + suffix))
        edit(stem)
        paths[name] = str(folder / f"{name}.bin")
    return paths


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
        **corrupt_corpora(tmp_path / "corpora"),
    }
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "ten.txt").write_text("0123456789")
    (tmp_path / "texts" / "empty.txt").write_text("")
    (tmp_path / "texts" / "nothing").mkdir()
    files |= {
        "ten_bytes": str(tmp_path / "texts" / "ten.txt"),
        "empty_text": str(tmp_path / "texts" / "empty.txt"),
        "empty_folder": str(tmp_path / "texts" / "nothing"),
        "text": str(tmp_path / "corpora" / "text.txt"),
    }
    return tmp_path, files


@pytest.mark.parametrize("case", list(CASES))
def test_bad_cli_input_is_one_clear_line(case, workdir):
    folder, files = workdir
    args, message = CASES[case]
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
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
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before  # nothing written


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


def _api_cases():
    """Bad input to the public API, one row per kind: (call, exception, what the message names)."""
    from optuna_lrlaw import LRLaw, Scale, fit_law
    from optuna_lrlaw.integration.study import open_storage
    from optuna_lrlaw.ladder import ComparisonPlan, TrainerRung, comparison_plan, default_rungs, run_ladder
    from optuna_lrlaw.proxies.config import ProxyConfig
    from optuna_lrlaw.proxies.train import resolve_device
    from optuna_lrlaw.science.loss_shape import LossShape
    from optuna_lrlaw.science.truth_curve import fit_truth_curve

    good, db = pd.DataFrame(GOOD), "sqlite:///x.db"
    rungs = default_rungs((16, 24), head_dim=8)
    grid = pd.DataFrame({"lr": [1e-3, 1e-3, 2e-3, 2e-3], "seed": [0, 1, 0, 1], "loss": [2.0, 2.0, 1.9, 1.9]})
    return {
        "Scale: negative params": (lambda: Scale(params=-1, tokens=1e9), ValueError, "Scale.params"),
        "Scale: zero tokens": (lambda: Scale(params=1e9, tokens=0), ValueError, "Scale.tokens"),
        "Scale: NaN params": (lambda: Scale(params=float("nan"), tokens=1e9), ValueError, "Scale.params"),
        "Scale.parse: not a number": (lambda: Scale.parse("params=abc,tokens=1e9"), ValueError, "params='abc'"),
        "Scale.parse: unknown key": (lambda: Scale.parse("foo=1,tokens=1e9"), ValueError, "key=value pairs"),
        "fit_law: empty table": (lambda: fit_law(good.iloc[:0]), ValueError, "empty"),
        "fit_law: no loss column": (lambda: fit_law(good.drop(columns="loss")), ValueError, "'loss'"),
        "fit_law: zero LR": (lambda: fit_law(good.assign(lr=0.0)), ValueError, "column 'lr'"),
        "fit_law: NaN params": (lambda: fit_law(good.assign(params=float("nan"))), ValueError, "column 'params'"),
        "fit_law: unknown feature": (lambda: fit_law(good, features=("params", "bogus")), ValueError, "'bogus'"),
        "fit_law: prior by name": (lambda: fit_law(good, prior="weak"), ValueError, "prior must be a LawPrior"),
        "from_json: not JSON": (lambda: LRLaw.from_json("not json"), ValueError, "not JSON"),
        "from_json: empty object": (lambda: LRLaw.from_json("{}"), ValueError, "optuna-lrlaw/law/v2"),
        "from_json: other format": (lambda: LRLaw.from_json('{"version": 99}'), ValueError, "optuna-lrlaw/law/v2"),
        "sampler: first_trial": (lambda: LRLawSampler(first_trial="mode"), ValueError, "first_trial"),
        "sampler: acquisition": (lambda: LRLawSampler(acquisition="x"), ValueError, "acquisition"),
        "sampler: empty lr_param": (lambda: LRLawSampler(lr_param=""), ValueError, "lr_param"),
        "sampler: law of another type": (lambda: LRLawSampler("law.json"), TypeError, "law must be"),
        "run_ladder: no rungs": (lambda: run_ladder([], storage=db), ValueError, "at least one rung"),
        "run_ladder: zero trials": (lambda: run_ladder(rungs, storage=db, trials=0), ValueError, "trials"),
        "run_ladder: reversed LR range": (
            lambda: run_ladder(rungs, storage=db, lr_range=(1e-1, 1e-4)),
            ValueError,
            "lr_range",
        ),
        "run_ladder: unknown device": (lambda: run_ladder(rungs, storage=db, device="tpu"), ValueError, "tpu"),
        "run_ladder: storage not a URL": (lambda: run_ladder(rungs, storage="x.db"), ValueError, "'x.db'"),
        "default_rungs: none": (lambda: default_rungs(()), ValueError, "widths"),
        "default_rungs: zero width": (lambda: default_rungs((0,)), ValueError, "widths"),
        "default_rungs: width not a multiple of the head": (lambda: default_rungs((30,)), ValueError, "head_dim=16"),
        "default_rungs: the same width twice": (lambda: default_rungs((16, 16), head_dim=8), ValueError, "distinct"),
        "TrainerRung: name with a slash": (
            lambda: TrainerRung("a/b", Scale(1e4, 1e5), lambda lr, trial: 1.0),
            ValueError,
            "'a/b'",
        ),
        "ProxyConfig: zero width": (lambda: ProxyConfig(width=0, depth=2, heads=2), ValueError, "width"),
        "ProxyConfig: zero depth": (lambda: ProxyConfig(width=32, depth=0, heads=4), ValueError, "depth"),
        "ProxyConfig: heads do not divide it": (lambda: ProxyConfig(width=30, depth=2, heads=4), ValueError, "heads"),
        "comparison_plan: unknown preset": (lambda: comparison_plan("laptop"), ValueError, "'laptop'"),
        "comparison_plan: 2 truth LRs": (lambda: comparison_plan("cpu", truth_lrs=2), ValueError, "truth_lrs"),
        "ComparisonPlan: one rung": (lambda: ComparisonPlan(tuple(rungs[:1]), rungs[1]), ValueError, "2 rungs"),
        "ComparisonPlan: target too small": (lambda: ComparisonPlan(tuple(rungs), rungs[0]), ValueError, "target"),
        "truth curve: 2 grid LRs": (lambda: fit_truth_curve(grid), ValueError, "at least 3 grid LRs"),
        "truth curve: no seed column": (lambda: fit_truth_curve(grid.drop(columns="seed")), ValueError, "'seed'"),
        "loss shape: zero tolerance": (
            lambda: LossShape(0.01, 1.0, float("inf")).tolerance_band(0),
            ValueError,
            "tolerance",
        ),
        "open_storage: not a URL": (lambda: open_storage("x.db"), ValueError, "'x.db'"),
        "resolve_device: unknown": (lambda: resolve_device("tpu"), ValueError, "'tpu'"),
    }


API_CASES = list(_api_cases())


@pytest.mark.parametrize("case", API_CASES)
def test_bad_api_input_raises_a_clear_error_and_writes_nothing(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    call, error, named = _api_cases()[case]
    with pytest.raises(error) as raised:
        call()
    assert named in str(raised.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args",
    [
        ["ladder", "--storage", "postgresql://lrlaw:SECRETPW@127.0.0.1:1/lrlaw", "--json"],
        ["report", "postgresql://lrlaw:SECRETPW@127.0.0.1:1/lrlaw"],
        ["ladder", "--storage", "mysql+pymysql://lrlaw:SECRETPW@127.0.0.1:1/lrlaw"],
    ],
    ids=["ladder postgresql", "report postgresql", "ladder mysql"],
)
def test_a_database_password_is_never_printed(args, tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from optuna_lrlaw.cli import main; sys.argv[0] = 'optuna-lrlaw'; main()",
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 2 and "cannot open storage" in done.stderr
    assert "SECRETPW" not in done.stdout + done.stderr and "lrlaw:***@127.0.0.1" in done.stderr


def test_urls_are_masked_where_they_are_printed_or_stored():
    from optuna_lrlaw.integration.study import masked_url

    assert masked_url("postgresql://lrlaw:p%40ss@db:5432/x") == "postgresql://lrlaw:***@db:5432/x"
    assert masked_url("sqlite:////tmp/ladder.db") == "sqlite:////tmp/ladder.db"
    assert "hunter2" not in masked_url("not a url://me:hunter2@host")
