"""plotly, imported when a figure is drawn, with an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType


def graph_objects() -> ModuleType:
    """``plotly.graph_objects``, or an ImportError saying how to get it."""
    try:
        return importlib.import_module("plotly.graph_objects")
    except ImportError as error:
        raise ImportError(
            "optuna_lrlaw.visualization draws with plotly: pip install 'optuna-lrlaw[plots]' (or plotly)"
        ) from error
