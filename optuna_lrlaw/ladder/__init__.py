"""The scale-up ladder: LR searches on proxies of growing size, the law refitted at every rung.

- `Rung`, `default_rungs`: the proxies of the ladder and their token budgets.
- `run_ladder`, `LadderResult`, `LadderEvents`: climb it, persisting every trial in an
  Optuna storage, and read off the law and its prediction for the scale you will train.
- `compare_search_costs`: what the ladder saves against μTransfer and ordinary search at a
  target scale, in FLOPs, device seconds and final-loss regret.

This is the orchestration room: it joins the proxies (torch), the Optuna plugin and the law.
"""

from optuna_lrlaw.ladder.compare import compare_search_costs
from optuna_lrlaw.ladder.run import DONE_ATTR, RUNG_ATTR, LadderEvents, LadderResult, run_ladder
from optuna_lrlaw.ladder.rungs import Rung, default_rungs

__all__ = [
    "DONE_ATTR",
    "RUNG_ATTR",
    "LadderEvents",
    "LadderResult",
    "Rung",
    "compare_search_costs",
    "default_rungs",
    "run_ladder",
]
