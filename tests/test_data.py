"""Token corpora: layout, determinism, the split by file, tokenizers and the command line."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import optuna_lrlaw.proxies.data as data_module
from optuna_lrlaw.proxies.data import builtin_corpus, builtin_corpus_for, open_corpus, prepare_corpus


@pytest.fixture
def source(tmp_path):
    folder = tmp_path / "src"
    for index in range(40):
        sub = folder / f"pkg{index % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"mod{index}.py").write_text(f"# module {index}\n" + f"def f{index}(x):\n    return x * {index}\n" * 20)
    (folder / "notes.md").write_text("not python\n")
    return folder


def test_byte_corpus_is_the_files_bytes_in_path_order_split_by_file(source, tmp_path):
    corpus = prepare_corpus(source, tmp_path / "out" / "corpus.bin", pattern="*.py", val_fraction=0.2)
    files = sorted(source.rglob("*.py"), key=lambda file: file.as_posix())
    everything = b"".join(file.read_bytes() + b"\n" for file in files)
    assert corpus.meta["files"]["train"] + corpus.meta["files"]["val"] == 40
    assert 0 < corpus.meta["files"]["val"] < 40
    train, val = bytes(np.asarray(corpus.train, dtype=np.uint8)), bytes(np.asarray(corpus.val, dtype=np.uint8))
    assert len(train) + len(val) == len(everything)
    val_files = [file for file in files if (file.read_bytes() + b"\n") in val]
    assert len(val_files) == corpus.meta["files"]["val"]
    for file in val_files:  # a validation file never appears in the training split
        assert file.read_bytes() not in train
    assert corpus.train.dtype == np.uint16 and corpus.vocab_size == 256


def test_preparing_twice_gives_identical_files(source, tmp_path):
    first = prepare_corpus(source, tmp_path / "a.bin")
    second = prepare_corpus(source, tmp_path / "b.bin")
    assert np.array_equal(first.train, second.train) and np.array_equal(first.val, second.val)


def test_a_single_file_is_split_inside_its_text(tmp_path):
    text = tmp_path / "book.txt"
    text.write_bytes(bytes(range(256)) * 40)
    corpus = prepare_corpus(text, tmp_path / "book.bin", val_fraction=0.1)
    assert len(corpus.val) == 1024 and len(corpus.train) == 9216


def test_windows_are_next_token_pairs_and_fixed_windows_repeat(source, tmp_path):
    corpus = prepare_corpus(source, tmp_path / "corpus.bin")
    batch = corpus.sample("train", 4, 16, np.random.default_rng(0))
    assert batch.shape == (4, 17) and batch.dtype == np.int64
    assert np.array_equal(corpus.fixed_windows("val", 3, 8), corpus.fixed_windows("val", 3, 8))
    with pytest.raises(ValueError, match="fewer than one sequence"):
        corpus.sample("val", 1, 10**6, np.random.default_rng(0))


def test_open_corpus_explains_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="optuna-lrlaw data prepare"):
        open_corpus(tmp_path / "nothing.bin")


def test_bad_arguments_are_refused(source, tmp_path):
    with pytest.raises(ValueError, match="tokenizer must be one of"):
        prepare_corpus(source, tmp_path / "c.bin", tokenizer="words")
    with pytest.raises(ValueError, match="val_fraction"):
        prepare_corpus(source, tmp_path / "c.bin", val_fraction=1.5)
    with pytest.raises(ValueError, match="no files matching"):
        prepare_corpus(source, tmp_path / "c.bin", pattern="*.rs")


def test_bpe_tokenizer_trains_on_training_files_and_is_saved(source, tmp_path):
    pytest.importorskip("tokenizers")
    corpus = prepare_corpus(source, tmp_path / "bpe.bin", tokenizer="bpe", vocab_size=300)
    assert corpus.meta["tokenizer"] == "bpe" and 256 < corpus.vocab_size <= 300
    assert (tmp_path / corpus.meta["tokenizer_file"]).exists()
    assert int(np.max(corpus.train)) < corpus.vocab_size
    assert len(corpus.train) < corpus.meta["tokens"]["train"] * 2  # merges shorten the text
    byte_level = prepare_corpus(source, tmp_path / "bytes.bin")
    assert len(corpus.train) < len(byte_level.train)


def test_builtin_corpus_is_the_standard_library_split_by_file(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTUNA_LRLAW_CACHE", str(tmp_path))
    corpus = builtin_corpus()
    assert corpus.meta["tokens"]["train"] > 10_000_000 and corpus.meta["files"]["val"] > 10
    assert builtin_corpus().path == corpus.path  # prepared once, then reused
    assert not list(tmp_path.glob(".preparing-*"))


def test_a_run_longer_than_the_standard_library_reads_the_installed_packages(tmp_path, monkeypatch):
    """The packages' corpus is chosen past one epoch of the standard library's, named by the
    files it is made of: the same files give the same corpus, one more file another."""
    monkeypatch.setenv("OPTUNA_LRLAW_CACHE", str(tmp_path / "cache"))
    packages = tmp_path / "site-packages"
    shutil.copytree(Path(data_module.__file__).parents[1], packages / "optuna_lrlaw")
    monkeypatch.setattr(data_module, "_packages_folder", lambda: packages)
    data_module.packages_corpus.cache_clear()
    small = builtin_corpus()
    assert builtin_corpus_for(len(small.train)).path == small.path
    large = builtin_corpus_for(len(small.train) + 1)
    assert large.path != small.path and large.meta["files"]["train"] > 10
    data_module.packages_corpus.cache_clear()
    assert data_module.packages_corpus().fingerprint() == large.fingerprint()
    (packages / "extra.py").write_text("print('one more file')\n" * 50)
    data_module.packages_corpus.cache_clear()
    assert data_module.packages_corpus().path != large.path
    data_module.packages_corpus.cache_clear()


def test_cli_prepares_a_corpus(source, tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from optuna_lrlaw.cli import main; main()",
            "data",
            "prepare",
            str(source),
            "--out",
            str(tmp_path / "cli.bin"),
            "--pattern",
            "*.py",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert out.returncode == 0, out.stderr
    assert "training" in out.stdout and json.loads((tmp_path / "cli.json").read_text())["vocab_size"] == 256
    missing = subprocess.run(
        [
            sys.executable,
            "-c",
            "from optuna_lrlaw.cli import main; main()",
            "data",
            "prepare",
            str(tmp_path / "no"),
            "--out",
            str(tmp_path / "x.bin"),
        ],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr
