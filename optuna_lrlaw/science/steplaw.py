"""Step Law's public table of 1911 dense pre-training runs, read into the observations schema.

The table (Li et al. 2025, arXiv 2503.04715; file ``data/dense_lr_bs_loss.csv`` of the
public ``step-law/steplaw`` repository) is the real test bed of this project: 17 cells of
(N, D), each a grid of learning rates times batch sizes. It is not shipped with the
package; point `read_steplaw` at a copy.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from optuna_lrlaw.science.observations import flag_divergence

#: Tokens per sequence in every Step Law run.
SEQUENCE_LENGTH = 2048
#: Where the table comes from, for anyone who has no copy.
WHERE_TO_GET = (
    "get it from the step-law/steplaw repository on GitHub, file data/dense_lr_bs_loss.csv "
    "(https://github.com/step-law/steplaw; Li et al. 2025, arXiv 2503.04715), and pass its path"
)


def read_steplaw(path: str | Path) -> pd.DataFrame:
    """Read ``dense_lr_bs_loss.csv`` as observations.

    ``loss`` is the table's ``smooth loss`` (the column the paper picks optima by),
    ``batch_tokens`` is ``bs * 2048``; the raw columns are kept. Diverged runs, which the
    table does not flag, are those above 1.5 times the best loss of their (N, D, B) sweep.

    Raises:
        FileNotFoundError: when there is no file at ``path``, saying where to get the table.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"no Step Law table at {path}: {WHERE_TO_GET}")
    raw = pd.read_csv(path)
    frame = raw.rename(columns={"N": "params", "D": "tokens"}).assign(
        lr=raw["lr"],
        loss=raw["smooth loss"],
        batch_tokens=raw["bs"] * SEQUENCE_LENGTH,
    )
    return flag_divergence(frame)
