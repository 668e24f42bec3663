"""Token corpora on disk: memory-mapped ``.bin`` files in nanoGPT's layout.

A corpus prepared at ``corpus.bin`` is three files side by side:

- ``corpus.bin``: the training tokens, a flat array of uint16 (uint32 above 65,536 tokens);
- ``corpus.val.bin``: the validation tokens, the same layout;
- ``corpus.json``: the metadata (tokenizer, vocabulary size, dtype, files, token counts).

Sources are split into training and validation by file, never inside a file, so
validation text is unseen; which side a file lands on depends only on its relative path
(a CRC-32 of it), so the split is stable as files are added. The built-in corpus is the
source code of the running Python's standard library: no download, about 30 MB of text.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import sysconfig
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TOKENIZERS: tuple[str, ...] = ("byte", "bpe")
BYTE_VOCAB = 256
CACHE_ENV = "OPTUNA_LRLAW_CACHE"


@dataclass(frozen=True)
class Corpus:
    """The training and validation tokens of a prepared corpus, memory-mapped.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> for name in ("a.txt", "b.txt", "c.txt"):
        ...     _ = (folder / name).write_text(name * 1000)
        >>> corpus = prepare_corpus(folder, folder / "corpus.bin", val_fraction=0.34)
        >>> corpus.vocab_size, len(corpus.train) + len(corpus.val)
        (256, 15003)
    """

    path: Path
    train: np.ndarray
    val: np.ndarray
    vocab_size: int
    meta: dict

    def sample(self, split: str, batch_size: int, seq_len: int, rng: np.random.Generator) -> np.ndarray:
        """``batch_size`` random windows of ``seq_len + 1`` tokens (inputs and next-token targets)."""
        tokens = self._split(split, seq_len)
        starts = rng.integers(0, len(tokens) - seq_len, size=batch_size)
        return np.stack([tokens[start : start + seq_len + 1] for start in starts]).astype(np.int64)

    def fixed_windows(self, split: str, count: int, seq_len: int) -> np.ndarray:
        """``count`` windows of ``seq_len + 1`` tokens spread evenly over the split: the same every call."""
        tokens = self._split(split, seq_len)
        starts = np.linspace(0, len(tokens) - seq_len - 1, num=count).astype(np.int64)
        return np.stack([tokens[start : start + seq_len + 1] for start in starts]).astype(np.int64)

    def _split(self, split: str, seq_len: int) -> np.ndarray:
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        tokens = self.train if split == "train" else self.val
        if len(tokens) <= seq_len + 1:
            raise ValueError(
                f"the {split} split of {self.path} has {len(tokens)} tokens, too few for windows of {seq_len}"
            )
        return tokens


def _stem(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix == ".bin" else path


def _files_of(stem: Path) -> dict[str, Path]:
    return {
        "train": stem.with_name(stem.name + ".bin"),
        "val": stem.with_name(stem.name + ".val.bin"),
        "meta": stem.with_name(stem.name + ".json"),
    }


def open_corpus(path: str | os.PathLike) -> Corpus:
    """The corpus prepared at ``path`` (``corpus.bin``, or its stem ``corpus``)."""
    files = _files_of(_stem(path))
    missing = [str(file) for file in files.values() if not file.exists()]
    if missing:
        raise FileNotFoundError(
            f"not a prepared corpus (missing {', '.join(missing)}); run `optuna-lrlaw data prepare`"
        )
    meta = json.loads(files["meta"].read_text())
    dtype = np.dtype(meta["dtype"])
    train, val = (np.memmap(files[split], dtype=dtype, mode="r") for split in ("train", "val"))
    return Corpus(path=files["train"], train=train, val=val, vocab_size=int(meta["vocab_size"]), meta=meta)


def _source_files(source: Path, pattern: str) -> list[Path]:
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise FileNotFoundError(f"no such file or folder: {source}")
    files = sorted((file for file in source.rglob(pattern) if file.is_file()), key=lambda file: file.as_posix())
    if not files:
        raise ValueError(f"no files matching {pattern!r} under {source}")
    return files


def _split_files(files: list[Path], relative: list[str], val_fraction: float) -> dict[str, list[Path]]:
    """Validation files are those whose path hashes below ``val_fraction``; at least one file each side.

    A single file is split inside its text instead (see `_write_splits`).
    """
    if len(files) == 1:
        return {"train": files, "val": files}
    position = {file: zlib.crc32(name.encode()) / 2**32 for file, name in zip(files, relative, strict=True)}
    val = [file for file in files if position[file] < val_fraction] or [min(files, key=position.get)]
    if len(val) == len(files):
        val.remove(max(val, key=position.get))
    held_out = set(val)
    return {"train": [file for file in files if file not in held_out], "val": val}


def prepare_corpus(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    tokenizer: str = "byte",
    vocab_size: int = 8192,
    val_fraction: float = 0.05,
    pattern: str = "*",
    exclude: Sequence[str] = (),
) -> Corpus:
    """Tokenize a file, or every file matching ``pattern`` under a folder, into a corpus at ``out``.

    ``tokenizer="byte"`` maps each UTF-8 byte to a token (vocabulary 256);
    ``tokenizer="bpe"`` trains a byte-level BPE of ``vocab_size`` tokens on the training
    files with the ``tokenizers`` package and saves it beside the corpus.
    ``exclude`` drops files with any of these folder names in their relative path.
    """
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"tokenizer must be one of {TOKENIZERS}, got {tokenizer!r}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction!r}")
    source = Path(source)
    files = _source_files(source, pattern)
    relative = [file.relative_to(source).as_posix() if source.is_dir() else file.name for file in files]
    kept = [not set(name.split("/")[:-1]) & set(exclude) for name in relative]
    files = [file for file, keep in zip(files, kept, strict=True) if keep]
    relative = [name for name, keep in zip(relative, kept, strict=True) if keep]
    splits = _split_files(files, relative, val_fraction)
    encode, vocab, tokenizer_file = _tokenizer(tokenizer, vocab_size, splits["train"])
    dtype = np.uint16 if vocab <= 2**16 else np.uint32
    stem = _stem(out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = _files_of(stem)
    counts = _write_splits(splits, encode, dtype, paths, single_file=len(files) == 1, val_fraction=val_fraction)
    meta = {
        "tokenizer": tokenizer,
        "vocab_size": vocab,
        "dtype": np.dtype(dtype).name,
        "source": str(source),
        "files": {"train": len(splits["train"]), "val": len(splits["val"])} if len(files) > 1 else {"single": 1},
        "tokens": counts,
        "val_fraction": val_fraction,
    }
    if tokenizer_file is not None:
        tokenizer_path = stem.with_name(stem.name + ".tokenizer.json")
        shutil.move(tokenizer_file, tokenizer_path)
        meta["tokenizer_file"] = tokenizer_path.name
    paths["meta"].write_text(json.dumps(meta, indent=2) + "\n")
    return open_corpus(stem)


def _tokenizer(kind: str, vocab_size: int, train_files: list[Path]):
    """(encode(bytes) -> token ids, vocabulary size, saved tokenizer file or None)."""
    if kind == "byte":
        return (lambda data: np.frombuffer(data, dtype=np.uint8)), BYTE_VOCAB, None
    try:
        from tokenizers import ByteLevelBPETokenizer
    except ImportError:
        raise ImportError("tokenizer='bpe' needs the `tokenizers` package: pip install tokenizers") from None
    if vocab_size <= BYTE_VOCAB:
        raise ValueError(f"a BPE vocabulary must exceed the {BYTE_VOCAB} bytes, got {vocab_size}")
    bpe = ByteLevelBPETokenizer()
    bpe.train([str(file) for file in train_files], vocab_size=vocab_size, show_progress=False)
    saved = Path(tempfile.mkdtemp()) / "tokenizer.json"
    bpe.save(str(saved))
    return (
        (lambda data: np.asarray(bpe.encode(data.decode("utf-8", errors="replace")).ids)),
        bpe.get_vocab_size(),
        saved,
    )


def _write_splits(splits, encode, dtype, paths, *, single_file: bool, val_fraction: float) -> dict[str, int]:
    """Stream each split's files, in order and separated by a newline, into its ``.bin`` file."""
    if single_file:
        data = splits["train"][0].read_bytes()
        cut = int(len(data) * (1 - val_fraction))
        parts = {"train": [data[:cut]], "val": [data[cut:]]}
    else:
        parts = {split: (file.read_bytes() + b"\n" for file in files) for split, files in splits.items()}
    counts = {}
    for split, chunks in parts.items():
        count = 0
        with open(paths[split], "wb") as handle:
            for chunk in chunks:
                tokens = np.asarray(encode(chunk)).astype(dtype)
                handle.write(tokens.tobytes())
                count += len(tokens)
        counts[split] = count
    return counts


def cache_dir() -> Path:
    """Where prepared built-in corpora live: ``$OPTUNA_LRLAW_CACHE``, else ``~/.cache/optuna-lrlaw``."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "optuna-lrlaw"
    return Path(os.environ.get(CACHE_ENV, default))


def builtin_corpus() -> Corpus:
    """The built-in corpus: this Python's standard-library sources, byte-level, prepared once and cached.

    Files are taken in sorted order of their path; ``site-packages`` is left out. Several
    processes may ask at once: each prepares into a private folder and the first to finish
    publishes it by an atomic rename.
    """
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    target = cache_dir() / f"stdlib-{version}-byte"
    if not (target / "corpus.json").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=".preparing-"))
        prepare_corpus(
            sysconfig.get_paths()["stdlib"], scratch / "corpus.bin", pattern="*.py", exclude=("site-packages",)
        )
        try:
            scratch.rename(target)
        except OSError:  # another process published first
            shutil.rmtree(scratch, ignore_errors=True)
    return open_corpus(target / "corpus.bin")
