"""Priors for the learning-rate law: a weak default, and published laws with their units.

A law here is ``log eta* = log eta*(ref) + sum_k a_k * log(f_k / ref_k)`` over scale
features ``f`` (``params`` N, ``tokens`` D, ``batch_tokens`` B). A `LawPrior` is an
independent normal prior on the log-LR at its own reference scale and on each exponent;
`fit_law` moves it exactly to the reference scale of the fit.

Published laws disagree (Step Law's data exponent is +0.31, paper A's -0.35: the exponent
depends on how batch size and schedule change with D), so they make weak priors, never
answers. The sds below are our choice, not the papers': wide enough that a handful of
sweeps overrule them.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from optuna_lrlaw.science._bayes import FloatArray
from optuna_lrlaw.science.scale import SCALE_FEATURES

#: The sd of an exponent the prior says nothing about.
UNINFORMED_EXPONENT_SD = 1.0


@dataclass(frozen=True)
class LawPrior:
    """An independent normal prior on a learning-rate law.

    Attributes:
        name: a short label for reports.
        log_lr: (mean, sd) of log eta* at ``reference`` (natural log of the LR).
        exponents: feature name -> (mean, sd) of its exponent; features not named get
            ``N(0, 1)``, a prior that says nothing.
        reference: the scale at which ``log_lr`` is given, feature name -> value; features
            not named are taken at 1.
        units: what N, D and B mean for this law.
        units_confirmed: False where the constants could not be checked against the source;
            using such a prior warns.
        source: where the law comes from.
    """

    name: str
    log_lr: tuple[float, float]
    exponents: dict[str, tuple[float, float]] = field(default_factory=dict)
    reference: dict[str, float] = field(default_factory=dict)
    units: str = ""
    units_confirmed: bool = True
    source: str = ""

    def __post_init__(self) -> None:
        unknown = (set(self.exponents) | set(self.reference)) - set(SCALE_FEATURES)
        if unknown:
            raise ValueError(f"LawPrior {self.name!r}: unknown features {sorted(unknown)}")
        pairs = [self.log_lr, *self.exponents.values()]
        if any(not (math.isfinite(m) and math.isfinite(s) and s > 0) for m, s in pairs):
            raise ValueError(f"LawPrior {self.name!r}: every (mean, sd) needs a finite mean and sd > 0")

    def gaussian(self, features: tuple[str, ...], reference: dict[str, float]) -> tuple[FloatArray, FloatArray]:
        """Mean and covariance of ``(log eta* at reference, exponent per feature)``.

        The log-LR at the fit's reference is the prior's log-LR plus each exponent times
        the log-distance between the two references, so the two are correlated exactly.
        """
        if not self.units_confirmed:
            warnings.warn(
                f"prior {self.name!r}: its units are not confirmed ({self.units}); "
                "check them before trusting its predictions",
                UserWarning,
                stacklevel=3,
            )
        p = len(features) + 1
        mean0 = np.zeros(p)
        var0 = np.zeros(p)
        mean0[0], var0[0] = self.log_lr[0], self.log_lr[1] ** 2
        for j, name in enumerate(features, start=1):
            m, s = self.exponents.get(name, (0.0, UNINFORMED_EXPONENT_SD))
            mean0[j], var0[j] = m, s**2
        shift = np.eye(p)
        for j, name in enumerate(features, start=1):
            shift[0, j] = math.log(reference[name] / self.reference.get(name, 1.0))
        return shift @ mean0, shift @ np.diag(var0) @ shift.T

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> LawPrior:
        return cls(
            name=data["name"],
            log_lr=tuple(data["log_lr"]),
            exponents={k: tuple(v) for k, v in data["exponents"].items()},
            reference=dict(data["reference"]),
            units=data["units"],
            units_confirmed=data["units_confirmed"],
            source=data["source"],
        )


def _published(
    name: str,
    prefactor: float,
    exponents: dict[str, float],
    typical: dict[str, float],
    *,
    units: str,
    source: str,
    units_confirmed: bool = True,
) -> LawPrior:
    """A published law ``eta* = prefactor * prod f^a`` as a prior centred on it.

    The prior is stated at a scale typical of the law's own data, where the law is best
    pinned down: log-LR sd 1 (a factor e) there, exponent sd 0.3. A law carried to another
    setup (data, tokenizer, schedule, parametrization) is not known better than that: the
    published exponents of D alone range from -0.35 to +0.31. A tighter prior also does
    harm beyond its own error: where it conflicts with the sweeps, the fit explains the
    conflict as scatter between sweeps and discounts them all (with sds 0.5 and 0.15, the
    8 sweeps of ``examples/data/synthetic_runs.csv`` could not pull Step Law's D exponent
    off +0.23, and the true optimum fell outside the 90% interval).
    """
    log_lr = math.log(prefactor) + sum(a * math.log(typical[k]) for k, a in exponents.items())
    return LawPrior(
        name=name,
        log_lr=(log_lr, 1.0),
        exponents={k: (a, 0.3) for k, a in exponents.items()},
        reference=dict(typical),
        units=units,
        units_confirmed=units_confirmed,
        source=source,
    )


#: The default: the optimum at N = 1e8, D = 1e10, B = 1e6 lies somewhere in a factor of
#: e^2.5 (about 12) around 1e-3 (1 sd), and no exponent is known (each N(0, 1)).
WEAK = LawPrior(
    name="weak",
    log_lr=(math.log(1e-3), 2.5),
    reference={"params": 1e8, "tokens": 1e10, "batch_tokens": 1e6},
    units="N non-embedding parameters, D tokens, B tokens per step",
    source="optuna-lrlaw default",
)

#: Step Law (Li et al. 2025, arXiv 2503.04715): eta* = 1.79 N^-0.713 D^0.307.
STEP_LAW = _published(
    "step-law",
    1.79,
    {"params": -0.713, "tokens": 0.307},
    {"params": 5e8, "tokens": 3e10},
    units="N non-embedding parameters, D training tokens; fitted at the best batch size",
    source="Li et al. 2025, arXiv 2503.04715 (constants from secondary notes)",
)

#: DeepSeek LLM (arXiv 2401.02954): eta* = 0.3118 C^-0.125 with C = M D, M non-embedding
#: FLOPs per token. We take M = 6 N (attention FLOPs neglected), so
#: eta* = 0.3118 * 6^-0.125 * N^-0.125 * D^-0.125.
DEEPSEEK = _published(
    "deepseek",
    0.3118 * 6.0**-0.125,
    {"params": -0.125, "tokens": -0.125},
    {"params": 1e9, "tokens": 1e11},
    units="C = M*D FLOPs with M = 6N non-embedding FLOPs per token (attention neglected)",
    source="DeepSeek-AI 2024, arXiv 2401.02954 (constants from secondary notes)",
)

#: Paper A, Eq. 6 (Zhou et al., arXiv 2601.05049): eta* = 38.4588 N^-0.2219 D^-0.3509,
#: MoE models under a WSD schedule. The units of N and D could not be confirmed.
PAPER_A_EQ6 = _published(
    "paper-a-eq6",
    38.4588,
    {"params": -0.2219, "tokens": -0.3509},
    {"params": 1e9, "tokens": 1e11},
    units="N and D as in paper A (unconfirmed: total or active parameters, raw tokens or billions)",
    units_confirmed=False,
    source="Zhou et al. 2026, arXiv 2601.05049, Eq. 6 (constants from secondary sources)",
)

#: For runs in μP (or CompleteP): the parametrization keeps the optimal LR fixed across width
#: at a fixed horizon (``../shared/science.md`` §1), so the exponent of N is 0 within 0.1; what
#: μP leaves, the drift with the horizon, the exponent of D learns from the sweeps (N(0, 1)).
MUP = LawPrior(
    name="mup",
    log_lr=WEAK.log_lr,
    exponents={"params": (0.0, 0.1)},
    reference=dict(WEAK.reference),
    units="N non-embedding parameters (width grown under μP), D tokens, B tokens per step",
    source="μP (Yang et al. 2021, arXiv 2203.03466): width-independent optimum at a fixed horizon",
)

#: Every prior by its name, for the CLI.
PRIORS: dict[str, LawPrior] = {p.name: p for p in (WEAK, STEP_LAW, DEEPSEEK, PAPER_A_EQ6, MUP)}
