"""Checks of the public API's arguments: a wrong one is named, with what was given, in one line.

Python accepts ``min_finished=5.5`` or ``inner="tpe"`` and fails much later, inside Optuna or
numpy, with a message about something else; these checks fail at the call instead.
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path


def check_instance(value: object, types: type | tuple[type, ...], name: str, *, what: str) -> None:
    """Raise TypeError unless ``value`` is one of ``types`` (``what`` says so in words)."""
    if not isinstance(value, types):
        raise TypeError(f"{name} must be {what}, got {type(value).__name__} {value!r:.60}")


def check_int(value: object, name: str, *, minimum: int | None = None) -> int:
    """``value`` as an int: a whole number (not a bool, not 5.5), at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r:.60}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def check_real(
    value: object,
    name: str,
    *,
    above: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
    at_most: float | None = None,
) -> float:
    """``value`` as a finite float within the bounds given (``above``/``below`` exclude theirs)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r:.60}")
    number = float(value)
    bounds = [
        (above, lambda b: number > b, "above"),
        (at_least, lambda b: number >= b, "at least"),
        (below, lambda b: number < b, "below"),
        (at_most, lambda b: number <= b, "at most"),
    ]
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    for bound, holds, words in bounds:
        if bound is not None and not holds(bound):
            raise ValueError(f"{name} must be {words} {bound:g}, got {value!r}")
    return number


def check_writable(path: str | os.PathLike, name: str, *, folder: bool) -> Path:
    """``path`` as a Path once it is known to be writable: an existing folder (or file) we may
    write in, or a new one whose nearest existing parent is a folder we may write in. Checked
    before any work, so that an hour of training does not end at an unwritable path."""
    path = Path(path)
    kind = "folder" if folder else "file"
    if path.exists():
        if path.is_dir() != folder:
            raise ValueError(f"{name} {str(path)!r} is a {'file' if folder else 'folder'}, not a {kind}")
        if not os.access(path, os.W_OK):
            raise ValueError(f"{name} {str(path)!r}: this user may not write to it")
        return path
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{name} {str(path)!r} cannot be created: {str(parent)!r} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{name} {str(path)!r} cannot be created: this user may not write in {str(parent)!r}")
    return path
