"""The μP coordinate check: do activations keep their size as the model widens?

After microsoft/mup's ``get_coord_data``: train models of several widths for a few steps
on one fixed batch and record the mean absolute value of every module's output at every
step. Under a correct μP each curve is flat across width once training has moved the
weights; under the standard parametrization with Adam, updates of size lr on every
coordinate add up over the fan-in and the activations grow with width.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from optuna_lrlaw.proxies.config import ProxyConfig
from optuna_lrlaw.proxies.model import build_model, configure_optimizer


def coordinate_check(
    config: ProxyConfig,
    widths: Sequence[int] | None = None,
    *,
    depths: Sequence[int] | None = None,
    lr: float = 1e-3,
    steps: int = 5,
    batch_size: int = 1,
    seeds: int = 3,
) -> pd.DataFrame:
    """Mean |output| of every module of ``config`` rebuilt at each width (or depth), at each step.

    Returns a long DataFrame with columns ``width, depth, step, module, mean_abs``; step 0
    is the initialisation, step t the model after t AdamW updates on one fixed random
    batch, each value the mean over ``seeds`` initialisations. Besides the modules,
    ``logits`` is the model's output and ``residual`` the residual stream entering the
    final norm (the quantity CompleteP keeps steady across depth). The batch is small on
    purpose: μP describes widths large against the number of tokens in a step, where the
    gradient of each matrix has low rank.

    Example:
        >>> frame = coordinate_check(ProxyConfig(width=32, depth=1, heads=2, seq_len=16), [32, 64], steps=2)
        >>> frame["width"].unique().tolist(), frame["step"].unique().tolist()
        ([32, 64], [0, 1])
    """
    shapes = [replace(config, width=width) for width in widths or []]
    shapes += [replace(config, depth=depth) for depth in depths or []]
    if not shapes:
        raise ValueError("give the widths or the depths to compare")
    generator = torch.Generator().manual_seed(0)
    batch = torch.randint(0, config.vocab_size, (batch_size, config.seq_len + 1), generator=generator)
    rows = []
    for shaped, seed in itertools.product(shapes, range(seeds)):
        torch.manual_seed(seed)
        model = build_model(shaped)
        optimizer = configure_optimizer(model, shaped, lr=lr, weight_decay=0.0)
        records: dict[str, float] = {}
        hooks = [
            module.register_forward_hook(_recorder(records, name or "logits"))
            for name, module in model.named_modules()
            if not isinstance(module, torch.nn.ModuleList)
        ]
        hooks.append(model.norm.register_forward_pre_hook(_recorder(records, "residual", inputs=True)))
        for step in range(steps):
            records.clear()
            logits = model(batch[:, :-1])
            shape = {"width": shaped.width, "depth": shaped.depth, "step": step}
            rows += [{**shape, "module": name, "mean_abs": value} for name, value in records.items()]
            F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten()).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        for hook in hooks:
            hook.remove()
    keys = ["width", "depth", "step", "module"]
    return pd.DataFrame(rows).groupby(keys, sort=False, as_index=False)["mean_abs"].mean()


def _recorder(records: dict[str, float], name: str, *, inputs: bool = False):
    def hook(module, args, output=None) -> None:
        tensor = args[0] if inputs else output
        tensor = tensor[0] if isinstance(tensor, tuple) else tensor
        records[name] = tensor.detach().abs().mean().item()

    return hook


def width_slopes(frame: pd.DataFrame, *, along: str = "width") -> pd.DataFrame:
    """The slope of log mean|a| against log width (or depth), per module and step: 0 is flat.

    Example:
        >>> frame = pd.DataFrame({"width": [64, 256], "step": 1, "module": "x", "mean_abs": [1.0, 2.0]})
        >>> round(float(width_slopes(frame)["slope"].iloc[0]), 6)
        0.5
    """

    def slope(group: pd.DataFrame) -> float:
        return float(np.polyfit(np.log(group[along]), np.log(group["mean_abs"]), 1)[0])

    slopes = [
        {"module": module, "step": step, "slope": slope(group)}
        for (module, step), group in frame.groupby(["module", "step"], sort=False)
        if group[along].nunique() > 1
    ]
    return pd.DataFrame(slopes)
