"""The scale of one training run: the coordinates a learning-rate law is written in."""

from __future__ import annotations

import math
from dataclasses import dataclass

#: The scale quantities a law can use as features, in the order they are reported.
SCALE_FEATURES: tuple[str, ...] = ("params", "tokens", "batch_tokens")


def _check_positive(name: str, value: float | None, *, optional: bool) -> float | None:
    if value is None:
        if optional:
            return None
        raise ValueError(f"Scale.{name} is required")
    if isinstance(value, bool):
        raise ValueError(f"Scale.{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"Scale.{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"Scale.{name} must be finite and positive, got {value!r}")
    return number


@dataclass(frozen=True)
class Scale:
    """The scale of one training run.

    Units are those of the scaling-law literature (Kaplan et al. 2020, Step Law):

    - ``params``: non-embedding parameters N (embedding and output-head matrices excluded).
    - ``tokens``: training tokens D seen by the whole run.
    - ``batch_tokens``: tokens per optimizer step B (sequences x sequence length), optional.
    - ``active_params``: non-embedding parameters active per token, for mixture-of-experts
      models; optional, defaults to ``params`` (a dense model).

    Example:
        >>> Scale(params=1.07e9, tokens=2e10).flops()
        1.284e+20
    """

    params: float
    tokens: float
    batch_tokens: float | None = None
    active_params: float | None = None

    def __post_init__(self) -> None:
        for name in ("params", "tokens"):
            object.__setattr__(self, name, _check_positive(name, getattr(self, name), optional=False))
        for name in ("batch_tokens", "active_params"):
            object.__setattr__(self, name, _check_positive(name, getattr(self, name), optional=True))
        if self.active_params is not None and self.active_params > self.params:
            raise ValueError(f"Scale.active_params ({self.active_params:g}) exceeds params ({self.params:g})")

    def flops(self) -> float:
        """Training compute in FLOPs, 6 * N_active * D (forward and backward, Kaplan et al.)."""
        active = self.active_params if self.active_params is not None else self.params
        return 6.0 * active * self.tokens

    def feature(self, name: str) -> float:
        """The value of one law feature (``params``, ``tokens`` or ``batch_tokens``)."""
        if name not in SCALE_FEATURES:
            raise ValueError(f"unknown scale feature {name!r}; expected one of {SCALE_FEATURES}")
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"this law uses {name!r}, but the scale does not give it: {self}")
        return value

    @classmethod
    def parse(cls, text: str) -> Scale:
        """Read ``"params=1.07e9,tokens=2e10[,batch_tokens=...]"`` (the CLI's ``--target``)."""
        fields: dict[str, float] = {}
        allowed = ("params", "tokens", "batch_tokens", "active_params")
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            key = key.strip()
            if not sep or key not in allowed:
                raise ValueError(f"cannot read scale {text!r}: expected key=value pairs with keys {allowed}")
            if key in fields:
                raise ValueError(f"cannot read scale {text!r}: {key} is given twice")
            try:
                fields[key] = float(value)
            except ValueError:
                raise ValueError(f"cannot read scale {text!r}: {key}={value!r} is not a number") from None
        if "params" not in fields or "tokens" not in fields:
            raise ValueError(f"cannot read scale {text!r}: it needs params=... and tokens=...")
        return cls(**fields)
