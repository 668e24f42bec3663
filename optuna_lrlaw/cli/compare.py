"""``optuna-lrlaw compare``: what choosing a large model's LR costs, by the law, μTransfer and ordinary search."""

from __future__ import annotations

import json
import math
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from optuna_lrlaw.cli.ladder import ProgressEvents, fitting_table, quiet_optuna, table_console
from optuna_lrlaw.science._arguments import check_writable

if TYPE_CHECKING:
    from optuna_lrlaw.ladder import Comparison, Rung


def compare(
    preset: Annotated[str, typer.Option(help="cpu (2 cores, about an hour) or gpu (one H200; not yet run).")] = "cpu",
    storage: Annotated[str, typer.Option(help="Optuna storage URL: SQLite, PostgreSQL or MySQL.")] = (
        "sqlite:///optuna-lrlaw.db"
    ),
    name: Annotated[str, typer.Option(help="Prefix of the comparison's studies.")] = "compare",
    device: Annotated[str, typer.Option(help="auto (a GPU when there is one), cpu or cuda.")] = "auto",
    corpus: Annotated[
        str | None, typer.Option(help="A corpus from 'optuna-lrlaw data prepare'; default: the built-in one.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the samplers.")] = 0,
    jobs: Annotated[
        int,
        typer.Option(help="Runs trained at once (the ladders and the runs at fixed LRs) by processes of this machine."),
    ] = 1,
    replay_seeds: Annotated[int | None, typer.Option(help="Seeds of each replayed search (preset: 100).")] = None,
    out: Annotated[Path | None, typer.Option(help="Write everything measured as JSON here.")] = None,
    figure: Annotated[
        Path | None, typer.Option(help="Write the regret-against-FLOPs figure here (HTML; plotly.min.js beside it).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Climb an sp and a μP ladder, measure the truth at a target 18x (cpu) or 27x (gpu) larger,
    and score six ways of choosing its LR by cost and regret. Everything is stored in
    --storage; rerun to resume (a finished comparison trains nothing new)."""
    import optuna

    from optuna_lrlaw.ladder import compare_search_costs, comparison_plan

    # What is written at the end is checked at the start: not after an hour of training.
    for path, option in ((out, "--out"), (figure, "--figure")):
        if path is not None:
            check_writable(path, option, folder=False)
    plan = comparison_plan(preset, **({} if replay_seeds is None else {"replay_seeds": replay_seeds}))
    quiet_optuna()
    training = {} if corpus is None else {"corpus": corpus}
    with ProgressEvents(table_console(stderr=True), None) as events:
        comparison = compare_search_costs(
            plan, storage=storage, name=name, device=device, seed=seed, events=events, jobs=jobs, **training
        )
    payload = {
        "command": f"optuna-lrlaw compare --preset {preset}"
        + ("" if replay_seeds is None else f" --replay-seeds {replay_seeds}")
        + ("" if jobs == 1 else f" --jobs {jobs}"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "torch": metadata.version("torch"),
        "optuna": optuna.__version__,
        "device": comparison.device,
        "target": plan.target.name,
        **comparison.to_dict(),
    }
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(payload, indent=1))
    if figure:
        from optuna_lrlaw.visualization import plot_search_costs

        figure.parent.mkdir(parents=True, exist_ok=True)
        plot_search_costs(comparison).write_html(figure, include_plotlyjs="directory")
    if as_json:
        print(json.dumps(payload))
        return
    print_comparison(comparison, plan.target)


def print_comparison(comparison: Comparison, target: Rung) -> None:
    """The strategies' table and the verdict on the product's goal."""
    console = table_console()
    rows = [
        {
            "strategy": row.strategy,
            "lr": "-" if math.isnan(row.lr) else f"{row.lr:.3g}",
            "regret": _percent(row.regret, row.regret_se),
            "measured (2 seeds)": (
                "-" if math.isnan(row.measured_regret) else _percent(row.measured_regret, row.measured_se)
            ),
            "x search": f"{row.flops_vs_search:.2f}",
            "runs": str(row.runs),
            "FLOPs": f"{row.flops:.3g}",
            "seconds": f"{row.seconds:.0f}",
        }
        for _, row in comparison.strategies.iterrows()
    ]

    def caption(columns: tuple[str, ...]) -> str:
        seconds = f"; seconds on {comparison.device}" if "seconds" in columns else ""
        return f"regret: vs the best of the strategy's own parametrization, ± standard error{seconds}"

    title = f"Choosing the LR of {target.name} ({target.scale().params:.3g} parameters)"
    table = fitting_table(title, caption, tuple(rows[0]) if rows else ("strategy",), rows, console.width)
    console.print(table)
    goal = comparison.goal
    verdict = "[bold green]met[/bold green]" if goal["met"] else "[bold red]not met[/bold red]"
    console.print(
        f"Goal ({100 * goal['regret_goal']:.1f}% regret at <= {goal['flops_share_goal']:.0%} of TPE's FLOPs, "
        f"no worse than μTransfer): {verdict}. Best law strategy: {goal['best_law_strategy']}, "
        f"{_percent(goal['regret'], goal['regret_se'])} at {goal['flops_share']:.2f}x TPE's FLOPs to the goal."
    )


def _percent(value: float, se: float) -> str:
    return f"{100 * value:.2f}% ± {100 * se:.2f}"
