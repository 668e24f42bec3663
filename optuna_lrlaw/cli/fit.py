"""``optuna-lrlaw fit``: fit the law on a table of runs and predict the LR at a target scale."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from optuna_lrlaw.cli.ladder import reach_text
from optuna_lrlaw.science.law import LRLaw, fit_law
from optuna_lrlaw.science.observations import flag_divergence, read_observations
from optuna_lrlaw.science.prediction import LRPrediction
from optuna_lrlaw.science.priors import PRIORS
from optuna_lrlaw.science.scale import Scale


def fit(
    runs: Annotated[
        Path, typer.Argument(help="CSV or Parquet file of runs: params, tokens, lr, loss [, batch_tokens, diverged].")
    ],
    target: Annotated[str, typer.Option(help="Scale to predict, e.g. params=1.07e9,tokens=2e10.")],
    batch_tokens: Annotated[
        float | None, typer.Option(help="Tokens per step at the target; the law then uses batch size as a feature.")
    ] = None,
    prior: Annotated[str, typer.Option(help=f"Prior on the law: one of {', '.join(PRIORS)}.")] = "weak",
    batch_form: Annotated[
        str,
        typer.Option(
            help="With --batch-tokens: how lr* depends on B: loglinear, surge (rise and fall around a knee "
            "that moves with D), or auto (the one that predicts held-out model sizes better)."
        ),
    ] = "auto",
    divergence_factor: Annotated[
        float | None, typer.Option(help="Also mark runs above this multiple of their sweep's best loss as diverged.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Fit the optimal-LR law on RUNS and predict the learning rate at --target."""
    if prior not in PRIORS:
        raise ValueError(f"unknown prior {prior!r}; choose one of {', '.join(PRIORS)}")
    scale = Scale.parse(target)
    if batch_tokens is not None:
        scale = Scale(scale.params, scale.tokens, batch_tokens, scale.active_params)
    features = ("params", "tokens", "batch_tokens") if scale.batch_tokens is not None else ("params", "tokens")
    observations = read_observations(runs)
    if divergence_factor is not None:
        observations = flag_divergence(observations, factor=divergence_factor)
    law = fit_law(observations, features=features, prior=PRIORS[prior], batch_form=batch_form)
    prediction = law.predict(scale)
    if as_json:
        print(json.dumps(_report(law, prediction), indent=2))
    else:
        _print_tables(law, prediction)


def _report(law: LRLaw, prediction: LRPrediction) -> dict:
    coefficients = law.coefficients(0.9)
    optima = law.optima.astype(object).where(law.optima.notna(), None)
    lo, hi = prediction.interval(0.9)
    one_shot, recommendation = prediction.assess(prediction.lr), prediction.recommend()
    return {
        "features": list(law.features),
        "batch_form": law.batch_form if "batch_tokens" in law.features else None,
        "batch_form_scores": law.form_scores,
        "prior": law.prior.name,
        "coefficients": {
            name: {"estimate": row.estimate, "sd": row.sd, "lo90": row.lo, "hi90": row.hi}
            for name, row in coefficients.iterrows()
        },
        "scatter": law.scatter,
        "optima": optima.to_dict(orient="records"),
        "prediction": {
            "scale": {k: v for k, v in vars(prediction.scale).items() if v is not None},
            "reach": law.reach(prediction.scale)._asdict(),
            "lr": prediction.lr,
            "lo90": lo,
            "hi90": hi,
            "log_lr_sd": prediction.log_lr_sd,
            "search_factor90": prediction.search_factor(0.9),
            "search_range_0.5%": list(prediction.search_range(0.9, 0.005)),
            "search_runs_0.5%": prediction.search_runs(0.9, 0.005),
            "one_shot_lr": one_shot.lr,
            "expected_regret": one_shot.expected_regret,
            "regret_in_band": one_shot.regret_in_band,
            "outside_band_probability": one_shot.outside_band_probability,
            "within_tolerance_probability": one_shot.within_tolerance_probability,
            "divergence_probability": one_shot.divergence_probability,
            "recommended_lr": recommendation.lr,
            "recommended_expected_regret": recommendation.expected_regret,
        },
    }


def _print_tables(law: LRLaw, prediction: LRPrediction) -> None:
    console = Console()
    symbols = {"params": "N", "tokens": "D", "batch_tokens": "B"}
    powers = [f for f in law.features if not (f == "batch_tokens" and law.batch_form == "surge")]
    law_text = " * ".join(["A", *(f"{symbols[f]}^{letter}" for f, letter in zip(powers, "abc", strict=False))])
    if len(powers) < len(law.features):
        law_text += " / cosh(ln(B / B_c) / 2)^k,  B_c ~ D^gamma"
    coefficients = Table(title=f"Law: lr* = {law_text}   (prior: {law.prior.name})")
    for column in ("coefficient", "estimate", "sd", "90% interval"):
        coefficients.add_column(column, justify="right" if column != "coefficient" else "left")
    labels = {
        "prefactor": "A (prefactor)",
        "batch_amplitude": "k (depth of the surge in B)",
        "batch_knee": "B_c at the reference D (tokens)",
        "knee_tokens_exponent": "gamma (B_c ~ D^gamma)",
        **{f: f"exponent of {symbols[f]} ({f})" for f in powers},
    }
    for name, row in law.coefficients(0.9).iterrows():
        label = labels[name]
        coefficients.add_row(label, f"{row.estimate:.4g}", f"{row.sd:.3g}", f"{row.lo:.4g} to {row.hi:.4g}")
    coefficients.caption = f"scatter of optima around the law: {law.scatter:.3f} in log LR"
    console.print(coefficients)

    optima = Table(title="Optimum of each sweep")
    keys = [c for c in ("params", "tokens", "batch_tokens") if c in law.optima.columns]
    for column in [*keys, "runs", "lr*", "90% interval", "note"]:
        optima.add_column(column)
    for _, row in law.optima.iterrows():
        interval = "" if math.isnan(row.lr) else f"{row.lr_lo:.3g} to {row.lr_hi:.3g}"
        lr = "" if math.isnan(row.lr) else f"{row.lr:.3g}" + ("" if row.bracketed else " (bound)")
        optima.add_row(*(f"{row[k]:.3g}" for k in keys), str(row.n_runs), lr, interval, row.note or "")
    console.print(optima)

    lo, hi = prediction.interval(0.9)
    target = ", ".join(f"{k}={v:.3g}" for k, v in vars(prediction.scale).items() if v is not None)
    one_shot, recommendation = prediction.assess(prediction.lr), prediction.recommend()
    start, stop = prediction.search_range(0.9, 0.005)
    runs = prediction.search_runs(0.9, 0.005)
    search = (
        f"1 run, at an LR from {start:.3g} to {stop:.3g}"
        if runs == 1
        else f"{runs} log-spaced runs from {start:.3g} to {stop:.3g}"
    )
    console.print(
        f"Predicted lr* at {target}: {prediction.lr:.3g} "
        f"(90% interval {lo:.3g} to {hi:.3g}; search factor x{prediction.search_factor(0.9):.2f})\n"
        f"A search to land within 0.5% of the best loss: {search} (the loss's curvature at this scale)\n"
        f"[bold]One-shot lr (the law's median): {one_shot.lr:.3g}[/bold]\n  {one_shot}\n"
        f"Hedged lr (lowest expected loss under the pooled loss shape): {recommendation.lr:.3g}  "
        f"(expected regret {100 * recommendation.expected_regret:.2f}%; it did not beat the median "
        "on held-out real rungs, docs/method.md)"
    )
    console.print(reach_text(law.reach(prediction.scale)))
