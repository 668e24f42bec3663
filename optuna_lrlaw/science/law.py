"""How the optimal learning rate moves with scale: a Bayesian power law.

Each sweep (the runs at one scale) gives a posterior for its optimum, summarised as
``m_i +- s_i`` in log LR by `estimate_optimum`. The law is a log-linear regression

    m_i = beta_0 + sum_k beta_k * log(f_ik / ref_k) + e_i,    e_i ~ N(0, s_i^2 + tau^2),

so precise sweeps count more than vague ones (heteroscedastic weights), and ``tau``, the
scatter of real optima around any power law, is learned from the data instead of being
assumed zero. Given ``tau`` the posterior of ``beta`` is normal (a conjugate normal
prior, `priors`); ``tau`` itself is integrated over a grid under a half-normal prior.
The predictive distribution of log eta* at a new scale is therefore a normal mixture
whose width grows with the distance from the data: this width is the "search factor"
the next scale's LR search must cover.

With the batch size among the features, B enters either as one more power law or as the
"surge" around a critical batch size that moves with D (`_design`), whichever predicts
held-out model sizes better; the regression itself is in `_regression`.

Sweeps whose optimum is not bracketed only bound it; they are reported and left out.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd

from optuna_lrlaw.science._arguments import check_instance
from optuna_lrlaw.science._bayes import GridDistribution, central_interval
from optuna_lrlaw.science._design import BATCH_FORMS, BatchForm, Design
from optuna_lrlaw.science._regression import Posterior, fit_regression
from optuna_lrlaw.science.loss_shape import ShapeLaw, fit_shape_law
from optuna_lrlaw.science.observations import validate_observations
from optuna_lrlaw.science.optimum import estimate_optimum
from optuna_lrlaw.science.prediction import LRPrediction
from optuna_lrlaw.science.priors import WEAK, LawPrior
from optuna_lrlaw.science.scale import SCALE_FEATURES, Scale

DEFAULT_FEATURES: tuple[str, ...] = ("params", "tokens")
_JSON_FORMAT = "optuna-lrlaw/law/v2"
_JSON_FORMATS_READ = ("optuna-lrlaw/law/v1", _JSON_FORMAT)
#: How much better (mean log density per held-out sweep, nats) the surge form must predict
#: to be chosen over the simpler power law in B: a Bayes factor of about 4.5 over 30 sweeps.
_SURGE_MARGIN = 0.05
_OBSERVATION_COLUMNS = ("params", "tokens", "batch_tokens", "lr", "loss", "diverged", "noise")
#: How far past its sweeps (a factor in any feature) a prediction is stated without a warning.
#: The law's own checks reach 2x to 27x in parameters (Step Law held out: 1.07e9 from sweeps
#: up to 5.4e8; the default ladder's target 16x past its top rung, the comparison's 18x and
#: 27x); beyond 100x a power law fitted on a decade or less is a guess about physics it never saw.
EXTRAPOLATION_LIMIT = 100.0


class Reach(NamedTuple):
    """Where a scale lies against the sweeps a law was fitted on, along its farthest feature.

    ``factor`` is how many times past the sweeps' range it lies (1 inside it) and ``side``
    says which way: ``"inside"``, ``"above"`` or ``"below"`` (a law for scaling up,
    asked about a smaller model).
    """

    feature: str
    factor: float
    side: Literal["inside", "above", "below"]

    @property
    def beyond_limit(self) -> bool:
        """Past `EXTRAPOLATION_LIMIT`, or below the sweeps: where a prediction deserves a warning."""
        return self.side == "below" or self.factor > EXTRAPOLATION_LIMIT

    def __str__(self) -> str:
        if self.side == "inside":
            return "within the range of the sweeps"
        word = "beyond the largest" if self.side == "above" else "below the smallest"
        return f"{self.factor:,.3g}x {word} sweep in {self.feature}"


def _sweep_keys(features: tuple[str, ...]) -> list[str]:
    # A sweep is one (N, D) cell, split further by batch size when the law uses it.
    return ["params", "tokens", *(["batch_tokens"] if "batch_tokens" in features else [])]


def stated_noise(sweep: pd.DataFrame) -> float | None:
    """The noise the trainer stated for a sweep's runs (their median), if it stated any."""
    if "noise" not in sweep.columns or sweep["noise"].isna().all():
        return None
    return float(sweep["noise"].median())


def estimate_optima(observations: pd.DataFrame, features: tuple[str, ...] = DEFAULT_FEATURES) -> pd.DataFrame:
    """The optimum of every sweep in a table of runs, one row per sweep.

    Columns: the sweep's scale, ``lr`` (posterior median), ``log_lr_mean``, ``log_lr_sd``,
    ``lr_lo`` and ``lr_hi`` (90% interval), ``min_loss`` (the fitted curve's lowest loss),
    ``bracketed``, ``beyond``, ``n_runs``, ``n_diverged``, and ``used`` with ``note``
    saying why a sweep is left out of the law.
    """
    keys = _sweep_keys(features)
    rows = []
    for scale_values, sweep in observations.groupby(keys, sort=True):
        row = dict(zip(keys, (float(v) for v in scale_values), strict=True))
        try:
            est = estimate_optimum(
                sweep["lr"].to_numpy(),
                sweep["loss"].to_numpy(),
                diverged=sweep["diverged"].to_numpy(),
                noise=stated_noise(sweep),
            )
        except ValueError as error:
            rows.append(
                {
                    **row,
                    "n_runs": len(sweep),
                    "n_diverged": int(sweep["diverged"].sum()),
                    "used": False,
                    "note": str(error),
                }
            )
            continue
        lo, hi = est.interval(0.9)
        rows.append(
            {
                **row,
                "lr": est.lr,
                "log_lr_mean": est.log_lr_mean,
                "log_lr_sd": est.log_lr_sd,
                "lr_lo": lo,
                "lr_hi": hi,
                "min_loss": est.min_loss,
                "bracketed": est.bracketed,
                "beyond": est.beyond,
                "n_runs": est.n_runs,
                "n_diverged": est.n_diverged,
                "used": est.bracketed,
                "note": "" if est.bracketed else f"not bracketed: the optimum may lie {est.beyond} the sweep",
            }
        )
    columns = [
        *keys,
        "lr",
        "log_lr_mean",
        "log_lr_sd",
        "lr_lo",
        "lr_hi",
        "min_loss",
        "bracketed",
        "beyond",
        "n_runs",
        "n_diverged",
        "used",
        "note",
    ]
    return pd.DataFrame(rows).reindex(columns=columns)


class LRLaw:
    """A fitted law for the optimal learning rate, ``eta* = A * N^a * D^b [* g(B)]``.

    Build one with `fit_law`; use `predict` for a new scale, `coefficients` for the
    exponents with their intervals, `update` when more runs arrive, and
    `to_json`/`from_json` to store it. ``batch_form`` says how the law treats the batch
    size (``"loglinear"``: a power law; ``"surge"``: a rise and fall around a knee that
    moves with D); ``form_scores`` holds the held-out evidence it was chosen by.

    Example:
        >>> law = fit_law(runs)                                        # doctest: +SKIP
        >>> law.predict(Scale(params=1.07e9, tokens=2e10)).interval()  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        design: Design,
        prior: LawPrior,
        observations: pd.DataFrame,
        optima: pd.DataFrame,
        posterior: Posterior,
        form_scores: dict[str, float] | None = None,
        batch_form_rule: BatchForm | Literal["auto"] = "auto",
    ) -> None:
        self._design = design
        self.prior = prior
        self.observations = observations
        self.optima = optima
        self._posterior = posterior
        self.form_scores = form_scores
        #: The ``batch_form`` it was fitted with: ``"auto"`` chooses again on `update`.
        self.batch_form_rule = batch_form_rule

    @property
    def features(self) -> tuple[str, ...]:
        return self._design.features

    @property
    def reference(self) -> dict[str, float]:
        return self._design.reference

    @property
    def batch_form(self) -> BatchForm:
        return self._design.batch_form

    def predict(self, scale: Scale) -> LRPrediction:
        """The predictive distribution of the optimal LR at ``scale`` (at its batch size,
        when the law uses one)."""
        check_instance(scale, Scale, "scale", what="a Scale (params=..., tokens=...)")
        mixture = self._posterior.linear(self._design.rows_at(scale), with_scatter=True)
        return LRPrediction.from_mixture(scale, mixture, shape=self.loss_shapes.at(scale))

    def reach(self, scale: Scale) -> Reach:
        """How far ``scale`` lies outside the sweeps the law rests on (its farthest feature).

        Example:
            >>> law.reach(Scale(params=1.07e9, tokens=2e10))  # doctest: +SKIP
            Reach(feature='params', factor=2.0, side='above')
        """
        check_instance(scale, Scale, "scale", what="a Scale (params=..., tokens=...)")
        used = self.optima[self.optima["used"]]
        farthest = Reach("params", 1.0, "inside")
        for feature in self._design.features:
            value, values = scale.feature(feature), used[feature].to_numpy(dtype=float)
            if value > values.max():
                reach = Reach(feature, value / values.max(), "above")
            elif value < values.min():
                reach = Reach(feature, values.min() / value, "below")
            else:
                continue
            if reach.factor > farthest.factor:
                farthest = reach
        return farthest

    @functools.cached_property
    def loss_shapes(self) -> ShapeLaw:
        """The loss curve's shape around eta* (skew, cliff, curvature by scale), pooled
        from this law's sweeps: what `LRPrediction.recommend` weighs a wrong LR by."""
        return fit_shape_law(self.observations, self.optima, self.features)

    @property
    def scatter(self) -> float:
        """Posterior mean of tau, the sd of real optima around the law in log LR."""
        return float(self._posterior.weights @ self._posterior.tau)

    def coefficients(self, q: float = 0.9) -> pd.DataFrame:
        """Posterior of the law's coefficients with equal-tailed ``q`` intervals.

        One row per exponent (``estimate`` is its posterior mean, ``sd`` its sd), and a row
        ``prefactor`` for A in ``eta* = A * N^a * D^b``, the LR at N = D = B = 1 as laws are
        published (``estimate`` is its median, ``sd`` the sd of log A). Under the surge
        form, ``batch_amplitude`` is k, ``batch_knee`` the critical batch size B_c (tokens)
        at the reference D (``estimate`` its median, ``sd`` the sd of log B_c), and
        ``knee_tokens_exponent`` gamma in B_c ~ D^gamma.
        """
        names = self._design.coefficient_names
        powers = self._design.power_features
        p = len(names)
        prefactor = np.zeros(p)
        prefactor[0] = 1.0
        prefactor[1 : 1 + len(powers)] = [-math.log(self.reference[f]) for f in powers]
        directions = {"prefactor": prefactor, **{name: np.eye(p)[j] for j, name in enumerate(names) if j > 0}}
        rows = {}
        for name, x in directions.items():
            mixture = self._posterior.linear(x, with_scatter=False)
            lo, hi = central_interval(mixture.quantile, q)
            rows[name] = {"estimate": mixture.mean, "sd": mixture.sd, "lo": lo, "hi": hi}
        rows["prefactor"]["estimate"] = float(self._posterior.linear(prefactor, with_scatter=False).quantile(0.5))
        for column in ("estimate", "lo", "hi"):
            rows["prefactor"][column] = math.exp(rows["prefactor"][column])
        if self._design.has_knee:
            rows.update(self._knee_rows(q))
        table = pd.DataFrame.from_dict(rows, orient="index")
        table.index.name = "coefficient"
        return table

    def _knee_rows(self, q: float) -> dict[str, dict[str, float]]:
        knees = self._design.knees
        weights = self._posterior.design_weights(len(knees))
        rows = {}
        for name, column, to_value in (
            ("batch_knee", 0, lambda c: self.reference["batch_tokens"] * np.exp(c)),
            ("knee_tokens_exponent", 1, lambda g: g),
        ):
            grid = np.unique(knees[:, column])
            marginal = GridDistribution(grid, np.array([weights[knees[:, column] == v].sum() for v in grid]))
            lo, hi = central_interval(marginal.quantile, q)
            median = float(marginal.quantile(0.5))
            rows[name] = {
                "estimate": float(to_value(median)),
                "sd": marginal.sd,
                "lo": float(to_value(lo)),
                "hi": float(to_value(hi)),
            }
        return rows

    def update(self, more_observations: pd.DataFrame) -> LRLaw:
        """The law refitted on all runs so far plus ``more_observations``: the same law that
        `fit_law` gives on the concatenated table, reference scale and batch form rule included."""
        more = validate_observations(more_observations, require=tuple(c for c in self.features if c == "batch_tokens"))
        combined = pd.concat([self.observations, more], ignore_index=True)
        return fit_law(combined, features=self.features, prior=self.prior, batch_form=self.batch_form_rule)

    def to_json(self) -> str:
        """Everything the law is, as JSON text; `from_json` gives back an equal law."""
        obs = self.observations
        payload = {
            "format": _JSON_FORMAT,
            "features": list(self.features),
            "reference": self.reference,
            "design": self._design.to_dict(),
            "form_scores": self.form_scores,
            "batch_form_rule": self.batch_form_rule,
            "prior": self.prior.to_dict(),
            "observations": {c: [_json_value(v) for v in obs[c]] for c in obs.columns},
            "optima": {c: [_json_value(v) for v in self.optima[c]] for c in self.optima.columns},
            "posterior": self._posterior.to_dict(),
        }
        return json.dumps(payload, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> LRLaw:
        """Read a law written by `to_json` (this version's format or the first one)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"not an optuna-lrlaw law: the text is not JSON ({error})") from None
        if not isinstance(data, dict) or data.get("format") not in _JSON_FORMATS_READ:
            raise ValueError(f"not an optuna-lrlaw law (expected format {_JSON_FORMAT!r})")
        try:
            observations = pd.DataFrame(data["observations"]).astype({"diverged": bool})
            for column in observations.columns.difference(["diverged"]):
                observations[column] = observations[column].astype(float)
            features = tuple(data["features"])
            reference = {k: float(v) for k, v in data["reference"].items()}
            return cls(
                design=Design.from_dict(features, reference, data.get("design", {})),
                prior=LawPrior.from_dict(data["prior"]),
                observations=observations,
                optima=pd.DataFrame(data["optima"]),
                posterior=Posterior.from_dict(data["posterior"]),
                form_scores=data.get("form_scores"),
                batch_form_rule=data.get("batch_form_rule", "loglinear"),
            )
        except (KeyError, TypeError, IndexError, ValueError) as error:
            raise ValueError(f"not a readable optuna-lrlaw law: {type(error).__name__}: {error}") from None

    def __repr__(self) -> str:
        used = int(self.optima["used"].sum())
        table = self.coefficients()
        exps = ", ".join(f"{f}^{table.loc[f, 'estimate']:+.3f}" for f in self._design.power_features)
        knee = ""
        if self._design.has_knee:
            knee = f", surge in B around {table.loc['batch_knee', 'estimate']:.3g} tokens at D_ref"
        return f"LRLaw(eta* ~ {exps}{knee}; {used} of {len(self.optima)} sweeps, prior {self.prior.name!r})"


def _json_value(value: object) -> object:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else None
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _fit_posterior(
    used: pd.DataFrame, features: tuple[str, ...], batch_form: BatchForm, prior: LawPrior
) -> tuple[Design, Posterior]:
    """The design and coefficient posterior for the bracketed sweeps ``used``.

    Under the surge form the knee is integrated twice: coarsely (knee and scatters) over
    its prior range, then finely over the box holding the coarse posterior's weight.
    """
    design = Design.build(features, batch_form, used)
    if not design.has_knee:
        return design, _regress(used, design, prior)
    coarse = _regress(used, design, prior, coarse=True)
    box = design.knee_box(coarse.design_weights(len(design.knees)))
    design = Design.build(features, batch_form, used, knee_box=box)
    return design, _regress(used, design, prior)


def _regress(used: pd.DataFrame, design: Design, prior: LawPrior, *, coarse: bool = False) -> Posterior:
    prior_mean, prior_cov, design_log_prior = design.prior(prior)
    return fit_regression(
        design.rows({f: used[f].to_numpy(dtype=float) for f in design.features}),
        used["log_lr_mean"].to_numpy(dtype=float),
        used["log_lr_sd"].to_numpy(dtype=float) ** 2,
        used["params"].to_numpy(),
        prior_mean,
        prior_cov,
        design_log_prior,
        coarse=coarse,
    )


def _held_out_scores(
    used: pd.DataFrame, features: tuple[str, ...], prior: LawPrior, forms: Sequence[BatchForm] = BATCH_FORMS
) -> dict[str, float] | None:
    """Mean log predictive density of each held-out sweep's optimum, per batch form.

    Each model size in turn is left out and predicted from the others (its optimum's own
    sd added to the prediction's); None with fewer than three model sizes, where no
    held-out evidence can be had.
    """
    sizes = np.unique(used["params"])
    if sizes.size < 3:
        return None
    scores: dict[str, float] = {}
    for form in forms:
        total = 0.0
        for size in sizes:
            train, test = used[used["params"] != size], used[used["params"] == size]
            design, posterior = _fit_posterior(train, features, form, prior)
            for _, sweep in test.iterrows():
                scale = Scale(float(sweep["params"]), float(sweep["tokens"]), float(sweep["batch_tokens"]))
                mixture = posterior.linear(design.rows_at(scale), with_scatter=True)
                total += mixture.log_pdf(float(sweep["log_lr_mean"]), extra_var=float(sweep["log_lr_sd"]) ** 2)
        scores[form] = total / len(used)
    return scores


def checked_features(features: Sequence[str]) -> tuple[str, ...]:
    """``features`` as a tuple, or a ValueError unless they are distinct `SCALE_FEATURES`."""
    if isinstance(features, str):
        raise TypeError(f"features must be a sequence of names, such as ('params', 'tokens'), got {features!r}")
    features = tuple(features)
    if not features or len(set(features)) != len(features) or not set(features) <= set(SCALE_FEATURES):
        raise ValueError(f"features must be distinct names from {SCALE_FEATURES}, got {features}")
    return features


def fit_law(
    observations: pd.DataFrame,
    *,
    features: tuple[str, ...] | list[str] = DEFAULT_FEATURES,
    prior: LawPrior | None = None,
    batch_form: BatchForm | Literal["auto"] = "auto",
) -> LRLaw:
    """Fit the optimal-LR law ``log eta* ~ sum_k a_k log f_k`` to sweeps at several scales.

    Args:
        observations: runs in the `observations` schema; every distinct scale is a sweep.
        features: scale features the law uses, from ``params``, ``tokens``, ``batch_tokens``.
        prior: a `LawPrior`; the default `priors.WEAK` says almost nothing.
        batch_form: how a law with ``batch_tokens`` treats B: ``"loglinear"`` (a power
            law), ``"surge"`` (rise and fall around a knee that moves with D, which needs
            ``tokens``), or ``"auto"``: the one that predicts held-out model sizes better
            (each model size left out in turn, the log density of its sweeps' optima
            under each form's prediction; kept as ``law.form_scores``; the surge form
            must win by `_SURGE_MARGIN`), or log-linear
            when fewer than three model sizes allow no such check. Ignored without
            ``batch_tokens``.

    Raises:
        ValueError: on a malformed table, unknown features or batch form, or when no sweep
            brackets its optimum.

    Example:
        >>> law = fit_law(runs, features=("params", "tokens"))        # doctest: +SKIP
    """
    features = checked_features(features)
    if batch_form not in (*BATCH_FORMS, "auto"):
        raise ValueError(f"batch_form must be one of {(*BATCH_FORMS, 'auto')}, got {batch_form!r}")
    uses_batch = "batch_tokens" in features
    if batch_form == "surge" and uses_batch and "tokens" not in features:
        raise ValueError("the surge batch form moves its knee with D: add 'tokens' to the features")
    prior = WEAK if prior is None else prior
    if not isinstance(prior, LawPrior):
        raise ValueError(f"prior must be a LawPrior, got {type(prior).__name__}")
    clean = validate_observations(observations, require=tuple(f for f in features if f == "batch_tokens"))
    clean = clean[[c for c in _OBSERVATION_COLUMNS if c in clean.columns]].reset_index(drop=True)
    optima = estimate_optima(clean, features)
    used = optima[optima["used"]]
    if used.empty:
        notes = "; ".join(sorted(set(optima["note"])))
        raise ValueError(f"none of the {len(optima)} sweeps brackets its optimum ({notes}); widen the sweeps")

    scores = None
    chosen: BatchForm = "loglinear" if batch_form == "auto" else batch_form
    if batch_form == "auto" and uses_batch and "tokens" in features:
        scores = _held_out_scores(used, features, prior)
        if scores is not None and scores["surge"] > scores["loglinear"] + _SURGE_MARGIN:
            chosen = "surge"
    design, posterior = _fit_posterior(used, features, chosen if uses_batch else "loglinear", prior)
    return LRLaw(design=design, prior=prior, observations=clean, optima=optima, posterior=posterior, form_scores=scores)
