"""Real proxies: GPT-style language models, trained as trials.

- `ProxyConfig`: the model's shape and parametrization (``sp``, ``mup``, ``completep``),
  with its parameter count and FLOPs per token.
- `build_model`, `configure_optimizer`: a ``torch.nn.Module`` and its AdamW, per-group.
- `prepare_corpus`, `open_corpus`, `builtin_corpus`: token corpora as memory-mapped files.
- `TrainConfig`, `train_proxy`, `ProxyResult`: one training run at one learning rate.
- `proxy_objective`: the same run as an Optuna objective.
- `coordinate_check`, `first_order_check`, `width_slopes`: the μP tests across width.
"""

from optuna_lrlaw.proxies.config import PARAMETRIZATIONS, ProxyConfig
from optuna_lrlaw.proxies.coord_check import coordinate_check, first_order_check, width_slopes
from optuna_lrlaw.proxies.data import Corpus, builtin_corpus, open_corpus, prepare_corpus
from optuna_lrlaw.proxies.model import ProxyModel, build_model, configure_optimizer
from optuna_lrlaw.proxies.objective import ProxyObjective, proxy_objective
from optuna_lrlaw.proxies.train import ProxyResult, TrainConfig, train_proxy

__all__ = [
    "PARAMETRIZATIONS",
    "Corpus",
    "ProxyConfig",
    "ProxyModel",
    "ProxyObjective",
    "ProxyResult",
    "TrainConfig",
    "build_model",
    "builtin_corpus",
    "configure_optimizer",
    "coordinate_check",
    "first_order_check",
    "open_corpus",
    "prepare_corpus",
    "proxy_objective",
    "train_proxy",
    "width_slopes",
]
