"""Finished training runs as a pandas DataFrame: the schema every fit reads.

One row per run:

=================  ========  =======================================================
column             required  meaning
=================  ========  =======================================================
``params``         yes       non-embedding parameters N
``tokens``         yes       training tokens D
``batch_tokens``   no        tokens per optimizer step B (needed when the law uses B)
``lr``             yes       peak learning rate (positive)
``loss``           yes       final loss (validation loss by preference); NaN or inf
                             only for diverged runs
``diverged``       no        True for runs that diverged (missing means False)
``noise``          no        the relative sd of one run's final loss between training
                             seeds, as the trainer measured it (0.01: 1%); a sweep's
                             optimum takes it as its noise prior (`estimate_optimum`)
=================  ========  =======================================================

Any other column is kept and ignored (a run name, a seed, a batch size in sequences).
Runs with the same ``params``, ``tokens`` (and ``batch_tokens``, when the law uses it)
form one LR sweep.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

REQUIRED_COLUMNS: tuple[str, ...] = ("params", "tokens", "lr", "loss")
NUMBER_COLUMNS: tuple[str, ...] = ("params", "tokens", "batch_tokens", "lr", "loss", "noise")

_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f", ""}


def _fail(column: str, row: object, message: str) -> ValueError:
    return ValueError(f"column {column!r}, row {row}: {message}")


def _as_numbers(frame: pd.DataFrame, column: str) -> pd.Series:
    raw = frame[column]
    numbers = pd.to_numeric(raw, errors="coerce").astype(float)
    text = numbers.isna() & raw.notna() & ~raw.astype(str).str.strip().str.lower().isin({"nan", "inf", "-inf"})
    if text.any():
        row = text.idxmax()
        raise _fail(column, row, f"{raw[row]!r} is not a number")
    return numbers


def _as_flags(frame: pd.DataFrame) -> pd.Series:
    if "diverged" not in frame:
        return pd.Series(False, index=frame.index)
    raw = frame["diverged"]
    if raw.dtype == bool:
        return raw.copy()
    words = raw.where(raw.notna(), "").astype(str).str.strip().str.lower()
    unknown = ~words.isin(_TRUE | _FALSE)
    if unknown.any():
        row = unknown.idxmax()
        raise _fail("diverged", row, f"{raw[row]!r} is not a boolean (use true/false)")
    return words.isin(_TRUE)


#: The range of plausible peak learning rates: beyond it a value is a unit or typing error.
MIN_LR, MAX_LR = 1e-12, 1e3


def validate_observations(frame: pd.DataFrame, *, require: tuple[str, ...] = ()) -> pd.DataFrame:
    """Check a table of runs against the schema and return a clean copy.

    The copy has float number columns and a boolean ``diverged`` column; free columns pass
    through. ``require`` names optional columns that must be present and complete (for
    example ``("batch_tokens",)`` for a law that uses the batch size).

    Raises:
        ValueError: naming the column and the row (the index label) of the first problem.
    """
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"observations must be a pandas DataFrame, got {type(frame).__name__}")
    if frame.empty:
        raise ValueError("the observations table is empty: it needs at least one run")
    for column in (*REQUIRED_COLUMNS, *require):
        if column not in frame.columns:
            raise ValueError(f"missing column {column!r}: the table has {list(frame.columns)}")
    clean = frame.copy()
    for column in NUMBER_COLUMNS:
        if column in clean:
            clean[column] = _as_numbers(clean, column)
    clean["diverged"] = _as_flags(clean)

    for column in ("params", "tokens", "lr", "batch_tokens", "noise"):
        if column not in clean:
            continue
        values = clean[column]
        missing_ok = column in ("batch_tokens", "noise") and column not in require
        bad = ~(np.isfinite(values) & (values > 0))
        if missing_ok:
            bad &= values.notna()
        if bad.any():
            row = bad.idxmax()
            raise _fail(column, row, f"must be finite and positive, got {values[row]!r}")
    bad_loss = ~np.isfinite(clean["loss"]) & ~clean["diverged"]
    if bad_loss.any():
        row = bad_loss.idxmax()
        raise _fail("loss", row, f"{clean['loss'][row]!r} is not finite, and the run is not marked diverged")
    not_positive = np.isfinite(clean["loss"]) & (clean["loss"] <= 0)
    if not_positive.any():
        row = not_positive.idxmax()
        raise _fail("loss", row, f"{clean['loss'][row]!r} is not positive: the law compares runs by relative loss")
    return clean


def read_observations(path: str | Path) -> pd.DataFrame:
    """Read runs from a CSV (``.csv``, ``.tsv``) or Parquet (``.parquet``) file and validate them.

    Rows are numbered from 0, the first data row after the header.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".txt"):
        try:
            frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
        except UnicodeDecodeError as error:
            raise ValueError(f"cannot read {path}: it is not UTF-8 text (byte {error.start}: {error.reason})") from None
    elif suffix in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(path)
        except ImportError as error:
            raise ValueError(f"reading {path.name} needs a Parquet engine: pip install pyarrow") from error
    else:
        raise ValueError(f"cannot read {path.name}: expected a .csv, .tsv or .parquet file")
    clean = validate_observations(frame)
    lr = clean["lr"]
    unusable = (lr < MIN_LR) | (lr > MAX_LR)
    if unusable.any():  # a unit or typing error in a file of runs
        row = unusable.idxmax()
        raise _fail("lr", row, f"{lr[row]!r} is not a learning rate: expected {MIN_LR:g} to {MAX_LR:g}")
    twice = frame.duplicated(keep="first")  # every column the same: a row pasted twice
    if twice.any():
        raise ValueError(f"{path.name}: row {twice.idxmax()} repeats an earlier row exactly (the same run twice?)")
    return clean


def blown_up(lrs: np.ndarray, losses: np.ndarray, factor: float = 1.5) -> np.ndarray:
    """Runs of one sweep above its best LR whose loss exceeds ``factor`` times the best loss.

    Diverged runs end near the loss of an untrained model (Step Law's table: about 6.5
    against 2.2 to 2.7). Below the best LR a high loss means too little progress, not
    divergence, so the rule looks only above it; it applies to positive losses, as
    cross-entropies are. Non-finite losses (runs already known to have diverged) are
    ignored here.
    """
    finite = np.isfinite(losses)
    if not finite.any() or losses[finite].min() <= 0:
        return np.zeros(losses.shape, dtype=bool)
    best = int(np.argmin(np.where(finite, losses, np.inf)))
    return finite & (lrs > lrs[best]) & (losses > factor * losses[best])


def flag_divergence(observations: pd.DataFrame, *, factor: float = 1.5) -> pd.DataFrame:
    """Mark as diverged every non-finite run, and every run that `blown_up` finds in its sweep.

    A table that does not flag its diverged runs can be flagged by this rule. A sweep is
    the runs sharing ``params``, ``tokens`` and, where given, ``batch_tokens``.
    """
    if not factor > 1:
        raise ValueError(f"factor must exceed 1, got {factor!r}")
    clean = validate_observations(observations)
    keys = [c for c in ("params", "tokens", "batch_tokens") if c in clean and clean[c].notna().all()]
    finite_loss = clean["loss"].where(np.isfinite(clean["loss"]) & ~clean["diverged"]).to_numpy()
    lrs = clean["lr"].to_numpy()
    blown = np.zeros(len(clean), dtype=bool)
    for rows in clean.groupby(keys).indices.values():
        blown[rows] = blown_up(lrs[rows], finite_loss[rows], factor)
    clean["diverged"] = clean["diverged"] | ~np.isfinite(clean["loss"]) | blown
    return clean
