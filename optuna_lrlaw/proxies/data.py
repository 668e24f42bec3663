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

import fnmatch
import functools
import hashlib
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
TOKEN_DTYPES: tuple[str, ...] = ("uint16", "uint32")
BYTE_VOCAB = 256
#: The fewest tokens a prepared split may hold: two windows of the proxies' default
#: 128-token context. A smaller source is a mistake (an empty file, the wrong pattern).
MIN_SPLIT_TOKENS = 256
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

    def fingerprint(self) -> str:
        """A short hash of what the corpus holds: its tokenizer, vocabulary and sizes, and the
        first and last 4,096 tokens of each split. Cheap, and enough to tell two corpora
        apart (the built-in one differs between Python versions); where it was read from
        does not count."""
        digest = hashlib.sha1()
        described = {key: self.meta.get(key) for key in ("tokenizer", "vocab_size", "dtype", "tokens")}
        digest.update(json.dumps(described, sort_keys=True).encode())
        for tokens in (self.train, self.val):
            digest.update(np.ascontiguousarray(tokens[:4096]).tobytes())
            digest.update(np.ascontiguousarray(tokens[-4096:]).tobytes())
        return digest.hexdigest()[:16]

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

    def check_fits(self, seq_len: int) -> None:
        """Refuse a sequence length that a split cannot hold one window of (a sequence and its
        next-token targets), before anything trains on it."""
        for split in ("train", "val"):
            self._split(split, seq_len)

    def _split(self, split: str, seq_len: int) -> np.ndarray:
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        tokens = self.train if split == "train" else self.val
        window = seq_len + 1
        if len(tokens) <= window:
            name = "training" if split == "train" else "validation"
            raise ValueError(
                f"the corpus's {name} split holds {len(tokens):,} tokens, fewer than one sequence of "
                f"seq_len={seq_len} needs ({window:,}): lower seq_len or prepare a larger corpus"
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
    """The corpus prepared at ``path`` (``corpus.bin``, or its stem ``corpus``), after checking
    its files against its metadata: a ValueError names the file at fault and what is wrong."""
    files = _files_of(_stem(path))
    missing = [str(file) for file in files.values() if not file.exists()]
    if missing:
        raise FileNotFoundError(
            f"not a prepared corpus (missing {', '.join(missing)}); run `optuna-lrlaw data prepare`"
        )
    meta = _read_meta(files["meta"])
    dtype = np.dtype(meta["dtype"])
    splits = {}
    for split in ("train", "val"):
        file, expected = files[split], meta["tokens"][split]
        size = file.stat().st_size
        if size % dtype.itemsize or size // dtype.itemsize != expected:
            raise ValueError(
                f"{file} holds {size:,} bytes, but {files['meta'].name} says {expected:,} tokens of {dtype.name} "
                f"({expected * dtype.itemsize:,} bytes): the file was cut or changed; prepare the corpus again"
            )
        tokens = np.memmap(file, dtype=dtype, mode="r") if size else np.zeros(0, dtype=dtype)
        if len(tokens) and int(tokens.max()) >= meta["vocab_size"]:
            raise ValueError(
                f"{file} holds token {int(tokens.max())}, outside the vocabulary of {meta['vocab_size']} "
                f"that {files['meta'].name} gives"
            )
        splits[split] = tokens
    return Corpus(path=files["train"], vocab_size=meta["vocab_size"], meta=meta, **splits)


def _read_meta(file: Path) -> dict:
    """A corpus's metadata, checked: a ValueError names the file and the entry at fault."""
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{file} is not a corpus description (not JSON: {error}); prepare the corpus again") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{file} is not a corpus description (a JSON object is expected)")
    missing = [key for key in ("vocab_size", "dtype", "tokens") if key not in meta]
    if missing:
        raise ValueError(f"{file} lacks {', '.join(missing)}: not a corpus from `optuna-lrlaw data prepare`")
    if meta["dtype"] not in TOKEN_DTYPES:
        raise ValueError(f"{file}: dtype {meta['dtype']!r} is not a token type; it must be one of {TOKEN_DTYPES}")
    vocab = meta["vocab_size"]
    if isinstance(vocab, bool) or not isinstance(vocab, int) or vocab < 2:
        raise ValueError(f"{file}: vocab_size must be an integer of at least 2, got {vocab!r}")
    counts = meta["tokens"]
    if not (
        isinstance(counts, dict) and all(isinstance(counts.get(s), int) and counts[s] >= 0 for s in ("train", "val"))
    ):
        raise ValueError(f"{file}: tokens must give the train and val token counts, got {counts!r}")
    return meta


def _source_files(source: Path, pattern: str | Sequence[str]) -> list[Path]:
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise FileNotFoundError(f"no such file or folder: {source}")
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    for each in patterns:
        if not each or Path(each).is_absolute() or ".." in Path(each).parts:
            raise ValueError(f"pattern {each!r} reaches outside {source}: give file names under it, such as '*.txt'")
    if len(patterns) == 1:
        found = {file for file in source.rglob(patterns[0]) if file.is_file()}
    else:  # one walk, each file name matched against every pattern
        found = {
            file
            for file in source.rglob("*")
            if any(fnmatch.fnmatch(file.name, each) for each in patterns) and file.is_file()
        }
    if not found:
        raise ValueError(f"no files matching {pattern!r} under {source}")
    return sorted(found, key=lambda file: file.as_posix())


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
    pattern: str | Sequence[str] = "*",
    exclude: Sequence[str] = (),
) -> Corpus:
    """Tokenize a file, or every file matching ``pattern`` under a folder, into a corpus at ``out``.

    ``tokenizer="byte"`` maps each UTF-8 byte to a token (vocabulary 256);
    ``tokenizer="bpe"`` trains a byte-level BPE of ``vocab_size`` tokens on the training
    files with the ``tokenizers`` package and saves it beside the corpus.
    ``pattern`` may be several patterns of file names (a file matching any is taken); ``exclude`` drops
    files with any of these folder names in their relative path.
    """
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"tokenizer must be one of {TOKENIZERS}, got {tokenizer!r}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction!r}")
    source, stem = Path(source), _stem(out)
    if Path(out).is_dir() or stem.is_dir():
        raise ValueError(f"{out} is a folder: name the corpus file, e.g. {Path(out) / 'corpus.bin'}")
    files = _source_files(source, pattern)
    relative = [file.relative_to(source).as_posix() if source.is_dir() else file.name for file in files]
    kept = [not set(name.split("/")[:-1]) & set(exclude) for name in relative]
    files = [file for file, keep in zip(files, kept, strict=True) if keep]
    relative = [name for name, keep in zip(relative, kept, strict=True) if keep]
    splits = _split_files(files, relative, val_fraction)
    encode, vocab, tokenizer_file = _tokenizer(tokenizer, vocab_size, splits["train"])
    dtype = np.uint16 if vocab <= 2**16 else np.uint32
    created = [folder for folder in (stem.parent, *stem.parent.parents) if not folder.exists()]
    stem.parent.mkdir(parents=True, exist_ok=True)
    # Everything is written into a private folder and moved into place once it is whole: a
    # failure, or a source too small to be a corpus, leaves nothing behind.
    scratch = Path(tempfile.mkdtemp(dir=stem.parent, prefix=".preparing-"))
    try:
        staged = _files_of(scratch / stem.name)
        counts = _write_splits(splits, encode, dtype, staged, single_file=len(files) == 1, val_fraction=val_fraction)
        small = {split: count for split, count in counts.items() if count < MIN_SPLIT_TOKENS}
        if small:
            raise ValueError(
                f"{source} gives too little text for a corpus: "
                + ", ".join(f"{count:,} {split} tokens" for split, count in small.items())
                + f" (each split needs at least {MIN_SPLIT_TOKENS:,})"
            )
        meta = {
            "tokenizer": tokenizer,
            "vocab_size": vocab,
            "dtype": np.dtype(dtype).name,
            "source": str(source),
            "files": {"train": len(splits["train"]), "val": len(splits["val"])} if len(files) > 1 else {"single": 1},
            "tokens": counts,
            "val_fraction": val_fraction,
        }
        final = _files_of(stem)
        if tokenizer_file is not None:
            staged["tokenizer"] = scratch / f"{stem.name}.tokenizer.json"
            final["tokenizer"] = stem.with_name(stem.name + ".tokenizer.json")
            shutil.move(tokenizer_file, staged["tokenizer"])
            meta["tokenizer_file"] = final["tokenizer"].name
        staged["meta"].write_text(json.dumps(meta, indent=2) + "\n")
        for name in ("train", "val", "tokenizer", "meta"):  # the metadata last: it says the corpus is whole
            if name in staged:
                os.replace(staged[name], final[name])
    except BaseException:
        if created:  # the outermost folder this call created, and all below it
            shutil.rmtree(created[-1], ignore_errors=True)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
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

    Files are taken in sorted order of their path; ``site-packages`` is left out.
    """
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stdlib = sysconfig.get_paths()["stdlib"]
    return _cached(f"stdlib-{version}-byte", stdlib, pattern="*.py", exclude=("site-packages",))


#: The large built-in corpus's sources: the text files of the installed packages.
PACKAGE_PATTERNS = ("*.py", "*.pyi", "*.h", "*.hpp", "*.cuh", "*.c", "*.cc", "*.cpp", "*.rst", "*.md", "*.txt")


@functools.lru_cache(maxsize=1)
def packages_corpus() -> Corpus:
    """The large built-in corpus, for runs that would read the standard library more than
    once: the source text (`PACKAGE_PATTERNS`) of the packages installed beside numpy (which
    torch needs), byte-level, in sorted order of their path. About 280 MB where torch,
    scipy, pandas and plotly are installed. The environment names it: the cache key is a
    hash of every file's path and size, so other installed packages make another corpus,
    and the same ones the same corpus. Prepared once (11 s here) and cached.
    """
    folder = _packages_folder()
    files = _source_files(folder, PACKAGE_PATTERNS)
    listing = "\n".join(f"{file.relative_to(folder).as_posix()}:{file.stat().st_size}" for file in files)
    key = hashlib.sha256(listing.encode()).hexdigest()[:12]
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return _cached(f"packages-{version}-{key}-byte", folder, pattern=PACKAGE_PATTERNS)


def _packages_folder() -> Path:
    """Where the installed packages live: the folder that holds numpy."""
    return Path(np.__file__).resolve().parents[1]


def builtin_corpus_for(tokens: int) -> Corpus:
    """The built-in corpus for runs of up to ``tokens`` training tokens: the standard
    library's while one epoch of it holds them, else the installed packages' (`packages_corpus`)."""
    small = builtin_corpus()
    return small if tokens <= len(small.train) else packages_corpus()


def _cached(name: str, source: str | os.PathLike, **options) -> Corpus:
    """The corpus ``name`` of the cache, prepared from ``source`` the first time. Several
    processes may ask at once: each prepares into a private folder and the first to finish
    publishes it by an atomic rename."""
    target = cache_dir() / name
    if not (target / "corpus.json").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=".preparing-"))
        prepare_corpus(source, scratch / "corpus.bin", **options)
        try:
            scratch.rename(target)
        except OSError:  # another process published first
            shutil.rmtree(scratch, ignore_errors=True)
    return open_corpus(target / "corpus.bin")
