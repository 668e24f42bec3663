"""``optuna-lrlaw ladder``: climb a scale-up ladder of proxies and predict the LR of a larger model."""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Callable, Sequence
from typing import Annotated

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from optuna_lrlaw.science.law import EXTRAPOLATION_LIMIT, Reach
from optuna_lrlaw.science.prediction import LRPrediction


def ladder(
    storage: Annotated[str, typer.Option(help="Optuna storage URL: SQLite, PostgreSQL or MySQL.")] = (
        "sqlite:///optuna-lrlaw.db"
    ),
    name: Annotated[str, typer.Option(help="The ladder's name; its studies are called NAME/RUNG.")] = "ladder",
    widths: Annotated[str, typer.Option(help="Widths of the rungs, comma-separated.")] = "32,48,64",
    depth: Annotated[int, typer.Option(help="Layers of every rung.")] = 2,
    head_dim: Annotated[int, typer.Option(help="Size of an attention head; width / head_dim heads.")] = 16,
    tokens_per_param: Annotated[float, typer.Option(help="Training tokens per non-embedding parameter.")] = 10.0,
    seq_len: Annotated[int, typer.Option(help="Tokens per training sequence.")] = 128,
    batch_size: Annotated[int, typer.Option(help="Sequences per optimizer step.")] = 32,
    parametrization: Annotated[str, typer.Option(help="sp, mup or completep.")] = "sp",
    trials: Annotated[int, typer.Option(help="The most trials per rung; a rung stops early once converged.")] = 6,
    target_width: Annotated[int, typer.Option(help="Width of the model to predict the LR of.")] = 256,
    device: Annotated[str, typer.Option(help="auto (a GPU when there is one), cpu or cuda.")] = "auto",
    corpus: Annotated[
        str | None,
        typer.Option(
            help="A corpus from 'optuna-lrlaw data prepare'; default: the built-in one (the standard library, "
            "or the installed packages where the largest rung would read it more than once)."
        ),
    ] = None,
    seed: Annotated[
        int,
        typer.Option(
            help="Seed of the samplers and of a new ladder's training runs (workers that join adopt its seed)."
        ),
    ] = 0,
    checkpoint_dir: Annotated[
        str | None,
        typer.Option(help="Checkpoint runs here: a dead worker's run resumes from it (a folder all workers reach)."),
    ] = None,
    stale_after: Annotated[
        float,
        typer.Option(help="Seconds after which a silent worker's trial is run again (a dead local worker: at once)."),
    ] = 120.0,
    jobs: Annotated[
        int | None,
        typer.Option(
            help="Runs trained at once by worker processes on this machine; default: 1 on a CPU, "
            "on a GPU as many as its memory holds (at most 8).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Search the optimal LR on proxies of growing width, refitting the law at each rung, and
    predict the LR at --target-width. Everything is stored in --storage; rerun to resume."""
    from optuna_lrlaw.integration.study import masked_url
    from optuna_lrlaw.ladder import default_rungs, run_ladder
    from optuna_lrlaw.ladder.run import json_records

    shape = {
        "depth": depth,
        "head_dim": head_dim,
        "tokens_per_param": tokens_per_param,
        "seq_len": seq_len,
        "batch_size": batch_size,
        "parametrization": parametrization,
    }
    rungs = default_rungs(_int_list(widths, "widths"), **shape)
    (target,) = default_rungs([target_width], **shape)
    quiet_optuna()
    console = table_console(stderr=True)
    common = {"storage": storage, "name": name, "device": device, "seed": seed, "corpus": corpus}
    common |= {"stale_after": stale_after, "jobs": jobs}
    with ProgressEvents(console, len(rungs)) as events:
        result = run_ladder(rungs, trials=trials, events=events, checkpoint_dir=checkpoint_dir, target=target, **common)
    prediction = result.predict(target.scale()) if result.law is not None else None
    reach = result.law.reach(target.scale()) if result.law is not None else None
    if as_json:
        payload = {
            "storage": masked_url(storage),
            "rungs": json_records(result.rungs),
            "target": _prediction_dict(target.name, prediction),
        }
        if payload["target"] is not None:
            payload["target"]["reach"] = reach._asdict()
        print(json.dumps(payload))
    else:
        _print_report(result.rungs, target.name, prediction, reach)


def _int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--{option} must be comma-separated integers, got {text!r}") from None
    if not values:
        raise ValueError(f"--{option} is empty")
    return values


class ProgressEvents:
    """Rich progress bars for the ladder: one over its stages (rungs, then any comparison's
    searches; ``n_stages=None`` when their number is not known ahead), one over the current
    stage's trials."""

    def __init__(self, console: Console, n_stages: int | None) -> None:
        # Bars only on a terminal: in a pipe or a log file, the lines alone.
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not console.is_terminal,
        )
        self.n_stages = n_stages
        self.stages_done = 0
        self.ladder_task = self.progress.add_task("stages", total=n_stages)
        self.rung_task: int | None = None

    def __enter__(self) -> ProgressEvents:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None and self.n_stages is not None:
            self.progress.update(self.ladder_task, completed=self.n_stages)
        self._close_stage()
        self.progress.__exit__(*exc)

    def rung_started(self, index, rung, prior: LRPrediction | None, trials_left: int) -> None:
        start = "wide prior" if prior is None else f"law predicts {prior.lr:.3g}"
        self._next_stage(f"rung {index + 1} {rung.name}", rung, f"{start}, {trials_left} trial(s) to run", trials_left)

    def stage_started(self, label, rung, trials_left: int) -> None:
        self._next_stage(f"{label} {rung.name}", rung, f"{trials_left} trial(s) to run", trials_left)

    def _next_stage(self, title: str, rung, detail: str, trials_left: int) -> None:
        self.progress.console.print(f"{title} ({rung.scale().params:,.0f} parameters): {detail}")
        self.progress.update(self.ladder_task, completed=self.stages_done)
        self.stages_done += 1
        if self.rung_task is not None:
            self.progress.remove_task(self.rung_task)
        self.rung_task = self.progress.add_task(f"  {rung.name} trials", total=trials_left)

    def _close_stage(self) -> None:
        """The last stage, if it ended early (a rung converged), shows what it ran, not a bar stuck short."""
        if self.rung_task is not None:
            (task,) = (task for task in self.progress.tasks if task.id == self.rung_task)
            self.progress.update(task.id, total=task.completed)

    def note(self, index, rung, message: str) -> None:
        self.progress.console.print(f"    {message}")

    def rung_finished(self, index, rung, study, prior: LRPrediction | None) -> None:
        """Each finished rung's figures and note go into its study, for optuna-dashboard."""
        from optuna_lrlaw.visualization import publish_to_dashboard

        publish_to_dashboard(study, prior)

    def ladder_finished(self, result, study, prior: LRPrediction | None) -> None:
        """The law of every rung, and its answer for the target, go into the top rung's study."""
        from optuna_lrlaw.visualization import publish_to_dashboard

        if result.law is not None:
            target = None if result.target is None else result.target.scale
            publish_to_dashboard(study, prior, law=result.law, target=target)

    def trial_finished(self, index, rung, trial) -> None:
        from optuna_lrlaw.ladder.run import BRACKET_ATTR, WORKER_ATTR, worker_name

        lr = trial.params.get("lr", math.nan)
        value = f"loss {trial.value:.4f}" if trial.value is not None else trial.state.name.lower()
        state = trial.state.name.lower() + (", bracketing the optimum" if trial.user_attrs.get(BRACKET_ATTR) else "")
        if trial.user_attrs.get(WORKER_ATTR, worker_name()) != worker_name():
            state += f", by worker {trial.user_attrs[WORKER_ATTR]}"
        self.progress.console.print(f"    trial {trial.number}: lr {lr:.3g}, {value} ({state})")
        (task,) = (task for task in self.progress.tasks if task.id == self.rung_task)
        if task.completed >= (task.total or 0):  # a bracketing trial, on top of the rung's budget
            self.progress.update(task.id, total=task.completed + 1)
        self.progress.advance(self.rung_task)


def _prediction_dict(target: str, prediction: LRPrediction | None) -> dict | None:
    if prediction is None:
        return None
    lo, hi = prediction.interval(0.9)
    scale = prediction.scale
    one_shot, hedged = prediction.assess(prediction.lr), prediction.recommend()
    return {
        "rung": target,
        "params": scale.params,
        "tokens": scale.tokens,
        "lr": prediction.lr,
        "lo90": lo,
        "hi90": hi,
        "one_shot_lr": one_shot.lr,
        "expected_regret": one_shot.expected_regret,
        "regret_in_band": one_shot.regret_in_band,
        "outside_band_probability": one_shot.outside_band_probability,
        "within_tolerance_probability": one_shot.within_tolerance_probability,
        "recommended_lr": hedged.lr,
        "recommended_expected_regret": hedged.expected_regret,
    }


def quiet_optuna() -> None:
    """Optuna's warnings, one line each: a trial's error reaches `main`, which names a fault
    in one line or raises the error with its traceback, so Optuna's copy of that traceback
    only buries the line that matters."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for handler in logging.getLogger("optuna").handlers:
        if not any(isinstance(kept, _WithoutTraceback) for kept in handler.filters):
            handler.addFilter(_WithoutTraceback())


class _WithoutTraceback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info, record.exc_text = None, None
        return True


def table_console(stderr: bool = False) -> Console:
    """A console for tables: piped output gets the width of the table rather than 80 columns
    of wrapped cells."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 160)


#: The report's columns, most wanted first: a narrow terminal drops them from the end.
_COLUMNS = (
    "rung",
    "best lr",
    "optimum found",
    "trials",
    "best loss",
    "law's prediction",
    "params",
    "pruned/div.",
    "tokens",
    "FLOPs",
)


def _rung_cells(row) -> dict[str, str]:
    return {
        "rung": row.rung,
        "params": f"{row.params:.3g}",
        "tokens": f"{row.tokens:.3g}",
        "law's prediction": _lr_text(row.prior_lr, row.prior_lo, row.prior_hi),
        "trials": str(row.trials),
        "pruned/div.": f"{row.pruned}/{row.diverged}",
        "best lr": f"{row.best_lr:.3g}",
        "best loss": f"{row.best_loss:.4f}",
        "optimum found": _lr_text(row.lr_star, row.lr_lo, row.lr_hi) + ("" if row.bracketed else " (bound)"),
        "FLOPs": f"{row.flops:.3g}",
    }


def rungs_table(rungs, width: int) -> Table:
    """The rungs as a table no wider than ``width`` (`fitting_table`, by `_COLUMNS`)."""

    def caption(columns: tuple[str, ...]) -> str:
        return "lr intervals are 90%" + ("; pruned/div. count trials" if "pruned/div." in columns else "")

    cells = [_rung_cells(row) for _, row in rungs.iterrows()]
    return fitting_table("Scale-up ladder", caption, _COLUMNS, cells, width)


def fitting_table(
    title: str,
    caption: Callable[[tuple[str, ...]], str],
    columns: Sequence[str],
    rows: list[dict[str, str]],
    width: int,
) -> Table:
    """A table no wider than ``width``: ``columns`` come most wanted first, and those that do
    not fit are left out from the end, the caption (``caption`` of the columns kept) saying
    which. The first column is text, the others numbers."""
    unbounded = Console(width=10_000)  # measures a table's natural width
    for kept in range(len(columns), 1, -1):
        shown, dropped = tuple(columns[:kept]), columns[kept:]
        note = caption(shown)
        if dropped:
            note += f"; not shown at this width: {', '.join(dropped)} (--json has all)"
        table = Table(title=title, caption=note)
        for column in shown:
            table.add_column(column, justify="left" if column == columns[0] else "right", no_wrap=True)
        for row in rows:
            table.add_row(*(row[column] for column in shown))
        if Measurement.get(unbounded, unbounded.options, table).maximum <= width:
            break
    return table


def reach_text(reach: Reach) -> str:
    """Where the target lies against the sweeps, and a warning where the law should not be trusted."""
    text = f"The target lies {reach}."
    if reach.side == "below":
        text += (
            "\n[bold]warning:[/bold] the law is fitted for scaling up; "
            "a model below the rungs is better searched directly."
        )
    elif reach.beyond_limit:
        text += (
            f"\n[bold]warning:[/bold] that is past {EXTRAPOLATION_LIMIT:.0f}x, where a power law fitted on the sweeps "
            "is a guess: add larger rungs (docs/method.md, 'How far the law reaches')."
        )
    return text


def _print_report(rungs, target: str, prediction: LRPrediction | None, reach: Reach | None) -> None:
    console = table_console()
    table = rungs_table(rungs, console.width)
    console.print(table)
    if prediction is None:
        console.print("No law yet: no rung's search brackets its optimum. Add trials or rungs and rerun.")
        return
    lo, hi = prediction.interval(0.9)
    one_shot, hedged = prediction.assess(prediction.lr), prediction.recommend()
    console.print(
        f"Predicted lr* for {target} ({prediction.scale.params:.3g} parameters): {prediction.lr:.3g}"
        f"  (90% interval {lo:.3g} to {hi:.3g})\n"
        f"[bold]One-shot lr (the law's median): {one_shot.lr:.3g}[/bold]\n"
        f"  {one_shot}\n"
        f"  (the hedged lr of lowest expected loss, {hedged.lr:.3g}, did not beat the median on "
        "held-out real rungs: docs/method.md)"
    )
    if reach is not None:
        console.print(reach_text(reach))


def _lr_text(lr: float, lo: float, hi: float) -> str:
    return "-" if math.isnan(lr) else f"{lr:.3g} [{lo:.2g}, {hi:.2g}]"
