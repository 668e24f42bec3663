"""The scale-up ladder: LR searches on proxies of growing size, the law refitted at every rung.

- `Rung`, `default_rungs`: the proxies of the ladder and their token budgets;
  `TrainerRung`: a rung trained by your own code (a `Scale` and a ``train(lr, trial)``).
- `run_ladder`, `LadderResult`, `LadderTarget`, `LadderEvents`: climb it, persisting every trial in an
  Optuna storage, and read off the law and its prediction for the scale you will train.
- `compare_search_costs`, `ComparisonPlan`, `comparison_plan`: what the ladder saves against
  μTransfer and ordinary search at a target far above its rungs, in FLOPs, device seconds
  and final-loss regret against a truth grid at the target.

This is the orchestration room: it joins the proxies (torch), the Optuna plugin and the law.
"""

from optuna_lrlaw.ladder.compare import Comparison, ComparisonPlan, compare_search_costs, comparison_plan
from optuna_lrlaw.ladder.run import DONE_ATTR, RUNG_ATTR, LadderEvents, LadderResult, LadderTarget, run_ladder
from optuna_lrlaw.ladder.rungs import Rung, TrainerRung, default_rungs

__all__ = [
    "Comparison",
    "ComparisonPlan",
    "DONE_ATTR",
    "RUNG_ATTR",
    "LadderEvents",
    "LadderResult",
    "LadderTarget",
    "Rung",
    "TrainerRung",
    "compare_search_costs",
    "comparison_plan",
    "default_rungs",
    "run_ladder",
]
