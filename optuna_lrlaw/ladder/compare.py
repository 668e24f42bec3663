"""What choosing the LR of one target run costs: the law's ladder against μTransfer and ordinary search.

Three ways to pick the peak LR of a model trained once, each ending in a run at the target:

- **law ladder**: climb the ladder (`run_ladder`) and train the target at the law's
  recommended LR (`LRPrediction.recommend`; or its median, ``law_lr="median"``);
- **μTransfer**: tune the LR of the smallest rung's model in μP (anchored at its own shape,
  where μP is the standard model) by ordinary search, and train the target in μP (CompleteP
  when the depth differs) at that LR, unchanged (``../shared/science.md`` §1);
- **ordinary search**: search the LR at the target itself as Optuna does by default (TPE
  sampler, median pruner); μTransfer's proxy is searched the same way.

Each strategy is charged for every run it trains, the target run included: FLOPs (what the
runs record, `ProxyConfig.flops_per_token`), seconds on the device (trial wall time) and the
final-loss regret of its target run, its loss over the best target loss any strategy
reached, minus one. μTransfer carries the LR across width, not across training horizon:
its proxy trains on fewer tokens than the target, which it inherits as an error. The
comparison is recorded in the ladder's storage, so it resumes like the ladder does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from optuna_lrlaw.integration import set_study_scale
from optuna_lrlaw.integration.study import FINISHED_STATES
from optuna_lrlaw.ladder.run import LadderEvents, LadderResult, record_rung, study_cost
from optuna_lrlaw.ladder.rungs import Rung

#: The LR's parameter name in every study of the comparison.
LR_PARAM = "lr"
#: Searches the comparison runs after the ladder (for progress displays).
COMPARE_STAGES = 4


def compare_search_costs(
    ladder: LadderResult,
    rungs: Sequence[Rung],
    target: Rung,
    *,
    storage: str | optuna.storages.BaseStorage = "sqlite:///optuna-lrlaw.db",
    name: str = "ladder",
    search_trials: int = 8,
    proxy_trials: int = 8,
    lr_range: tuple[float, float] = (1e-4, 1e-1),
    device: str = "auto",
    seed: int = 0,
    law_lr: Literal["recommend", "median"] = "recommend",
    events: LadderEvents | None = None,
    **training,
) -> pd.DataFrame:
    """Run the three strategies for ``target`` and tabulate what each cost and found.

    Args:
        ladder: the climbed ladder (`run_ladder` on ``rungs``), whose law predicts the target's LR.
        rungs: its rungs; the smallest is μTransfer's proxy.
        target: the scale all three strategies choose an LR for.
        storage, name: where the ladder lives; the comparison's studies are ``{name}/compare/...``.
        search_trials: trials of the ordinary search at the target.
        proxy_trials: trials of μTransfer's search on its proxy.
        lr_range, device, seed, training: as in `run_ladder`.
        law_lr: the law's LR for the target: ``"recommend"`` (lowest expected loss) or ``"median"``.
        events: progress hooks; each strategy's search is announced with `LadderEvents.stage_started`.

    Returns:
        One row per strategy: ``strategy``, ``runs`` (all runs it trained), ``target_runs``,
        ``lr`` and ``loss`` (of its best target run), ``regret``, ``flops``,
        ``seconds``, ``device``, and ``flops_vs_search``, its FLOPs over ordinary search's.

    Example:
        >>> result = run_ladder(rungs, storage="sqlite:///ladder.db")               # doctest: +SKIP
        >>> compare_search_costs(result, rungs, target, storage="sqlite:///ladder.db")  # doctest: +SKIP
    """
    if law_lr not in ("recommend", "median"):
        raise ValueError(f"law_lr must be 'recommend' or 'median', got {law_lr!r}")
    if ladder.law is None:
        raise ValueError("the ladder has no law yet (no rung's sweep brackets its optimum); add trials or rungs")
    if search_trials < 1 or proxy_trials < 1:
        raise ValueError(f"search_trials and proxy_trials must be at least 1, got {search_trials}, {proxy_trials}")
    storage = optuna.storages.get_storage(storage)
    events = events or LadderEvents()
    proxy = min(rungs, key=lambda rung: rung.model.params())
    mup_proxy, mup_target = _transfer_pair(proxy, target)

    def search(label: str, rung: Rung, trials: int, fixed_lr: float | None = None) -> optuna.Study:
        """A study of ``trials`` runs of ``rung`` (at ``fixed_lr`` if given), resumed if it exists."""
        objective = rung.objective(lr_range, lr_param=LR_PARAM, device=device, **training)
        study = optuna.create_study(
            storage=storage,
            study_name=f"{name}/compare/{label}/{rung.name}",
            sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=optuna.pruners.MedianPruner(),
            load_if_exists=True,
        )
        record_rung(study, rung)
        set_study_scale(study, objective.scale)
        trials_left = trials - len(study.get_trials(deepcopy=False, states=FINISHED_STATES))
        events.stage_started(label, rung, max(trials_left, 0))
        if trials_left > 0:
            if fixed_lr is not None:
                study.enqueue_trial({LR_PARAM: fixed_lr})

            def report(study: optuna.Study, trial: FrozenTrial) -> None:
                events.trial_finished(-1, rung, trial)

            study.optimize(objective, n_trials=trials_left, callbacks=[report])
        return study

    # The comparison's COMPARE_STAGES searches, each resumed from the storage if it has run:
    prediction = ladder.predict(target.scale())
    law_target = search(
        "law", target, 1, fixed_lr=prediction.recommend().lr if law_lr == "recommend" else prediction.lr
    )
    transfer_proxy = search("mutransfer-proxy", mup_proxy, proxy_trials)
    transfer_lr = _best_trial(transfer_proxy).params[LR_PARAM]
    transfer_target = search("mutransfer", mup_target, 1, fixed_lr=transfer_lr)
    ordinary = search("search", target, search_trials)

    ladder_flops, ladder_seconds = ladder.rungs["flops"].sum(), ladder.rungs["wall_seconds"].sum()
    proxy_cost = study_cost(transfer_proxy, mup_proxy)
    rows = [
        _row("law ladder", int(ladder.rungs["trials"].sum()), law_target, target, ladder_flops, ladder_seconds),
        _row(
            "μTransfer",
            proxy_cost["trials"],
            transfer_target,
            mup_target,
            proxy_cost["flops"],
            proxy_cost["wall_seconds"],
        ),
        _row("ordinary search", 0, ordinary, target, 0.0, 0.0),
    ]
    table = pd.DataFrame(rows)
    table["regret"] = table["loss"] / table["loss"].min() - 1
    table["flops_vs_search"] = table["flops"] / float(
        table.loc[table["strategy"] == "ordinary search", "flops"].iloc[0]
    )
    table["device"] = _device(ordinary)
    return table[
        ["strategy", "runs", "target_runs", "lr", "loss", "regret", "flops", "seconds", "flops_vs_search", "device"]
    ]


def _transfer_pair(proxy: Rung, target: Rung) -> tuple[Rung, Rung]:
    """The proxy and target of μTransfer: μP anchored at the proxy's shape (CompleteP across depths)."""
    kind = "mup" if proxy.model.depth == target.model.depth else "completep"
    anchor = {
        "parametrization": kind,
        "base_width": proxy.model.width,
        "base_depth": proxy.model.depth,
        "base_heads": proxy.model.heads,
    }
    return (
        replace(proxy, model=replace(proxy.model, **anchor)),
        replace(target, model=replace(target.model, **anchor)),
    )


def _best_trial(study: optuna.Study) -> FrozenTrial:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise ValueError(f"study {study.study_name!r} has no completed trial")
    return min(complete, key=lambda trial: trial.value)


def _row(
    strategy: str,
    runs_before: int,
    at_target: optuna.Study,
    target: Rung,
    flops_before: float,
    seconds_before: float,
) -> dict[str, object]:
    """A strategy's totals: its runs before the target (``*_before``) plus its runs at the target.

    Its LR and loss are those of its best target run; a diverged run counts with the loss it ended on.
    """
    cost = study_cost(at_target, target)
    best = _best_trial(at_target)
    return {
        "strategy": strategy,
        "runs": runs_before + cost["trials"],
        "target_runs": cost["trials"],
        "lr": best.params[LR_PARAM],
        "loss": best.value,
        "flops": flops_before + cost["flops"],
        "seconds": seconds_before + cost["wall_seconds"],
    }


def _device(study: optuna.Study) -> str:
    """Where the runs trained, as they recorded it (``cpu``, or the GPU's name)."""
    # A pruned run stops before it records its device; the finished ones say it.
    devices = {str(t.user_attrs["device"]) for t in study.get_trials(deepcopy=False) if "device" in t.user_attrs}
    return ", ".join(sorted(devices)) or "unknown"
