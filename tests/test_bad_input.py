"""Bad input, one row per kind: one clear line on stderr, exit code 2, no traceback, nothing written."""

import functools
import json
import math
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
    "prepare: a pattern reaching up": (
        ["data", "prepare", "{text_folder}", "--out", "c.bin", "--pattern", "../*"],
        "reaches outside",
    ),
    "prepare: an absolute pattern": (
        ["data", "prepare", "{text_folder}", "--out", "c.bin", "--pattern", "/etc/*"],
        "reaches outside",
    ),
    "ladder name empty": (["ladder", "--name", ""], "name must name the ladder"),
    "ladder seed negative": (["ladder", "--seed", "-1"], "seed must be at least 0"),
    "no jobs": (["ladder", "--jobs", "0"], "jobs must be at least 1"),
    "in-memory SQLite": (["ladder", "--storage", "sqlite:///:memory:"], "in-memory SQLite database"),
    "in-memory SQLite, short form": (["report", "sqlite://"], "in-memory SQLite database"),
    "checkpoint folder is a file": (
        ["ladder", "--device", "cpu", "--checkpoint-dir", "notes.db"],
        "is a file, not a folder",
    ),
    "checkpoint folder under a file": (["ladder", "--device", "cpu", "--checkpoint-dir", "notes.db/ck"], "is a file"),
    "tokens per parameter infinite": (["ladder", "--tokens-per-param", "inf"], "positive and finite"),
    "tokens per parameter too few for a step": (["ladder", "--tokens-per-param", "1e-9"], "a rung needs at least 10"),
    "batch too large for the budget": (["ladder", "--batch-size", "10000000"], "a rung needs at least 10"),
    "depth beyond memory": (["ladder", "--device", "cpu", "--depth", "100000"], "GiB to train, more than"),
    "width beyond memory": (["ladder", "--device", "cpu", "--widths", "16,65536"], "GiB to train, more than"),
    "sequence beyond the corpus": (
        ["ladder", "--device", "cpu", "--seq-len", "8192", "--tokens-per-param", "200", "--corpus", "{good}"],
        "fewer than one sequence",
    ),
    "stale-after too short": (["ladder", "--stale-after", "0"], "stale_after must be at least 4"),
    "compare --out a folder": (["compare", "--out", "folder"], "--out 'folder' is a folder, not a file"),
    "compare --figure a folder": (["compare", "--figure", "folder"], "--figure 'folder' is a folder, not a file"),
}


def corrupt_corpora(folder: Path) -> dict[str, str]:
    """A good corpus, and copies of it broken one way each (as a disk or a hand edit breaks them)."""
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
    paths["good"] = str(good)
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
        "text_folder": str(tmp_path / "texts"),
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
    from optuna_lrlaw import LawFromStorage, LRLaw, LRLawConvergence, LRLawPruner, Scale, fit_law
    from optuna_lrlaw.integration.study import open_storage
    from optuna_lrlaw.ladder import ComparisonPlan, TrainerRung, comparison_plan, default_rungs, run_ladder
    from optuna_lrlaw.proxies import proxy_objective
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
        "open_storage: in memory": (lambda: open_storage("sqlite:///:memory:"), ValueError, "in-memory SQLite"),
        "resolve_device: unknown": (lambda: resolve_device("tpu"), ValueError, "'tpu'"),
        "sampler: inner by name": (lambda: LRLawSampler(inner="tpe"), TypeError, "inner must be an Optuna sampler"),
        "sampler: negative seed": (lambda: LRLawSampler(seed=-1), ValueError, "seed must be at least 0"),
        "sampler: fractional seed": (lambda: LRLawSampler(seed=1.5), TypeError, "seed must be an integer"),
        "pruner: inner by name": (lambda: LRLawPruner(inner="median"), TypeError, "inner must be an Optuna pruner"),
        "pruner: fractional min_finished": (lambda: LRLawPruner(min_finished=5.5), TypeError, "min_finished"),
        "pruner: too few min_finished": (lambda: LRLawPruner(min_finished=2), ValueError, "min_finished"),
        "pruner: NaN spike_factor": (lambda: LRLawPruner(spike_factor=math.nan), ValueError, "spike_factor"),
        "pruner: spike_factor of 1": (lambda: LRLawPruner(spike_factor=1.0), ValueError, "spike_factor"),
        "pruner: min_probability of 1": (lambda: LRLawPruner(min_probability=1.0), ValueError, "min_probability"),
        "pruner: warmup_fraction of 2": (lambda: LRLawPruner(warmup_fraction=2.0), ValueError, "warmup_fraction"),
        "pruner: min_probability as text": (lambda: LRLawPruner(min_probability="0.1"), TypeError, "min_probability"),
        "pruner: lr_param not a string": (lambda: LRLawPruner(lr_param=None), TypeError, "lr_param"),
        "convergence: fractional min_trials": (lambda: LRLawConvergence(min_trials=2.5), TypeError, "min_trials"),
        "convergence: zero regret": (lambda: LRLawConvergence(0.0), ValueError, "max_expected_regret"),
        "convergence: sampler by name": (lambda: LRLawConvergence(sampler="tpe"), TypeError, "sampler must be"),
        "LawFromStorage: not a URL": (lambda: LawFromStorage("not-a-url"), ValueError, "'not-a-url' is not a URL"),
        "LawFromStorage: in memory": (lambda: LawFromStorage("sqlite://"), ValueError, "in-memory SQLite"),
        "LawFromStorage: features as one string": (
            lambda: LawFromStorage(optuna.storages.InMemoryStorage(), features="params"),
            TypeError,
            "features must be a sequence",
        ),
        "LawFromStorage: unknown feature": (
            lambda: LawFromStorage(optuna.storages.InMemoryStorage(), features=("flops",)),
            ValueError,
            "features must be distinct names",
        ),
        "LawFromStorage: prior by name": (
            lambda: LawFromStorage(optuna.storages.InMemoryStorage(), prior="weak"),
            TypeError,
            "prior must be a LawPrior",
        ),
        "LawFromStorage: studies as one string": (
            lambda: LawFromStorage(optuna.storages.InMemoryStorage(), studies="ladder/w32"),
            TypeError,
            "studies must be a collection",
        ),
        "fit_law: features as one string": (lambda: fit_law(good, features="params"), TypeError, "features"),
        "predict: a tuple for a Scale": (lambda: _law().predict((1e9, 1e10)), TypeError, "scale must be a Scale"),
        "reach: a dict for a Scale": (lambda: _law().reach({"params": 1e9}), TypeError, "scale must be a Scale"),
        "from_json: a NaN weight": (lambda: LRLaw.from_json(_law_json(weight=None)), ValueError, "not finite"),
        "from_json: a negative weight": (lambda: LRLaw.from_json(_law_json(weight=-1.0)), ValueError, "non-negative"),
        "from_json: a negative variance": (lambda: LRLaw.from_json(_law_json(variance=-1.0)), ValueError, "variances"),
        "from_json: a negative scatter": (lambda: LRLaw.from_json(_law_json(tau=-0.1)), ValueError, "tau"),
        "run_ladder: negative seed": (lambda: run_ladder(rungs, storage=db, seed=-1), ValueError, "seed"),
        "run_ladder: fractional trials": (lambda: run_ladder(rungs, storage=db, trials=2.5), TypeError, "trials"),
        "run_ladder: empty name": (lambda: run_ladder(rungs, storage=db, name=""), ValueError, "name must name"),
        "run_ladder: stale_after of 0": (
            lambda: run_ladder(rungs, storage=db, stale_after=0),
            ValueError,
            "stale_after",
        ),
        "default_rungs: infinite tokens": (
            lambda: default_rungs((32,), tokens_per_param=math.inf),
            ValueError,
            "tokens_per_param",
        ),
        "default_rungs: too few tokens for a step": (
            lambda: default_rungs((32,), tokens_per_param=1e-3),
            ValueError,
            "a rung needs at least 10",
        ),
        "proxy_objective: beyond memory": (
            lambda: proxy_objective(ProxyConfig(width=32, depth=100_000, heads=2), tokens=2**22, device="cpu"),
            ValueError,
            "GiB to train",
        ),
        "proxy_objective: checkpoint folder is a file": (
            lambda: proxy_objective(ProxyConfig(width=32, depth=1, heads=2), tokens=2**16, checkpoint_dir=__file__),
            ValueError,
            "checkpoint_dir",
        ),
    }


@functools.cache
def _law():
    from optuna_lrlaw import fit_law

    return fit_law(pd.DataFrame(GOOD))


def _law_json(*, weight=1.0, variance=None, tau=None) -> str:
    """A law's JSON with one number of its posterior changed (as a hand edit or a bad writer would)."""
    payload = json.loads(_law().to_json())
    posterior = payload["posterior"]
    posterior["weights"][0] = weight if weight != 1.0 else posterior["weights"][0]
    if variance is not None:
        posterior["covs"][0][0][0] = variance
    if tau is not None:
        posterior["tau"][0] = tau
    return json.dumps(payload)


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


def _faults():
    """Faults of the machine or the database as they reach the command, one per kind."""
    import errno

    import sqlalchemy.exc
    import torch

    def disk_full_inside_optuna():
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/ckpt/run.pt.tmp")
        except OSError as error:
            raise RuntimeError("Should not reach.") from error

    def database_gone():
        cause = Exception("server closed the connection (postgresql://lrlaw:SECRETPW@db/lrlaw)")
        raise sqlalchemy.exc.OperationalError("SELECT 1", {}, cause)

    def gpu_out_of_memory():
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def cpu_out_of_memory():
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 51539607552 bytes")

    def storage_internal():
        raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.")

    def sqlite_disk_full():  # as Optuna reports SQLite's full disk: its own words on top
        try:
            raise sqlalchemy.exc.OperationalError("INSERT", {}, Exception("database or disk is full"))
        except sqlalchemy.exc.OperationalError as error:
            raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from error

    return {
        "disk full, inside Optuna": (disk_full_inside_optuna, "no space left on the disk (/ckpt/run.pt.tmp)"),
        "database gone": (database_gone, "the database stopped answering"),
        "GPU out of memory": (gpu_out_of_memory, "out of memory while training"),
        "CPU out of memory": (cpu_out_of_memory, "out of memory while training"),
        "storage error": (storage_internal, "the database stopped answering"),
        "SQLite's disk full": (sqlite_disk_full, "no space left on the disk"),
    }


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full, whose writes fail as a full disk's do")
def test_a_checkpoint_on_a_full_disk_is_named_and_leaves_no_partial_file(tmp_path):
    """A real ENOSPC (writes to /dev/full): the run stops with the error the command names as
    a full disk, and the checkpoint's scratch file is removed. (torch's writer, given a path,
    reported it as an unexplained RuntimeError.)"""
    from optuna_lrlaw.cli import named_fault
    from optuna_lrlaw.proxies import ProxyConfig
    from optuna_lrlaw.proxies.train import TrainConfig, train_proxy

    model = ProxyConfig(width=16, depth=1, heads=2, seq_len=16)
    config = TrainConfig(model, lr=1e-2, tokens=16 * 8 * 8, batch_size=8, evals=2, checkpoint_dir=str(tmp_path))
    scratch = tmp_path / f"{config.fingerprint()}.tmp"
    scratch.symlink_to("/dev/full")
    with pytest.raises(Exception) as raised:
        train_proxy(config, device="cpu")
    assert named_fault(raised.value).startswith("no space left on the disk")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("fault", list(_faults()))
def test_a_fault_of_the_machine_or_the_database_is_one_line_naming_it(fault, monkeypatch, capsys):
    """Faults end with exit code 1 and one line: the cause, the remedy, and that a rerun resumes."""
    import optuna_lrlaw.cli as cli

    raise_it, named = _faults()[fault]
    monkeypatch.setattr(cli, "app", raise_it)
    with pytest.raises(SystemExit) as ended:
        cli.main()
    assert ended.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("optuna-lrlaw: error: ") and named in err
    assert "run the same command again" in err and "SECRETPW" not in err


def test_bad_input_is_not_taken_for_a_fault(monkeypatch, capsys):
    """A storage that cannot be opened is bad input (exit 2), though SQLAlchemy's error lies beneath."""
    import optuna_lrlaw.cli as cli

    monkeypatch.setattr(cli.sys, "argv", ["optuna-lrlaw", "report", "postgresql://u:PW@127.0.0.1:1/x"])
    with pytest.raises(SystemExit) as ended:
        cli.main()
    assert ended.value.code == 2 and "cannot open storage" in capsys.readouterr().err
