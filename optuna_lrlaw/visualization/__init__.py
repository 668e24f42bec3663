"""Plotly figures of what the plugin measured (``pip install 'optuna-lrlaw[plots]'``).

Like ``optuna.visualization``, each function takes what it draws (a study, a law, a
comparison) and returns a ``plotly.graph_objects.Figure``; plotly is imported when a figure
is drawn, with an error naming the extra when it is missing.

- `plot_law`: the optimal LR across scales, each sweep's optimum and the law's predictive band.
- `plot_sweep`: one study's runs, loss against LR, with the posterior of its optimum.
- `plot_belief`: the `LRLawSampler`'s belief about the optimum, trial by trial.
- `plot_search_costs`: a comparison's strategies, regret against FLOPs.
- `ladder_report`: one self-contained HTML page for a climbed ladder (``optuna-lrlaw report``).
- `publish_to_dashboard`: a rung's figures and note inside its study, for optuna-dashboard
  (`run_ladder` calls it after every rung when optuna-dashboard is installed).
"""

from optuna_lrlaw.visualization._dashboard import publish_to_dashboard
from optuna_lrlaw.visualization._law import plot_law
from optuna_lrlaw.visualization._report import ladder_report
from optuna_lrlaw.visualization._search_costs import plot_search_costs
from optuna_lrlaw.visualization._study import plot_belief, plot_sweep

__all__ = ["ladder_report", "plot_belief", "plot_law", "plot_search_costs", "plot_sweep", "publish_to_dashboard"]
