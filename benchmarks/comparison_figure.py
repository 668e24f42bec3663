"""A static image of a comparison's regret-against-FLOPs figure, for docs read without JavaScript.

    python benchmarks/comparison_figure.py benchmarks/results/comparison_cpu.json docs/figures/comparison_cpu.png

The interactive figure is `optuna_lrlaw.visualization.plot_search_costs` (``optuna-lrlaw
compare --figure``); this draws the same points from the comparison's JSON with matplotlib,
which renders without a browser.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("comparison", type=Path)
    parser.add_argument("image", type=Path)
    args = parser.parse_args()
    data = json.loads(args.comparison.read_text())
    fig, ax = plt.subplots(figsize=(10, 5.6), dpi=110)
    for sampler in ("TPE", "GP", "random", "law + LRLawSampler"):
        rows = [r for r in data["replays"] if r["sampler"] == sampler]
        ax.errorbar(
            [r["flops"] for r in rows],
            [100 * r["regret"] for r in rows],
            yerr=[100 * r["regret_se"] for r in rows],
            fmt=":o",
            markersize=3,
            capsize=2,
            label=f"{sampler} (replayed, by trials)",
        )
    shots = [r for r in data["strategies"] if r["scored_by"] != "replay mean"]
    ax.errorbar(
        [r["flops"] for r in shots],
        [100 * r["regret"] for r in shots],
        yerr=[100 * r["regret_se"] for r in shots],
        fmt="D",
        color="tab:red",
        capsize=3,
        label="strategies (one chosen LR)",
    )
    for r in shots:
        point = (r["flops"], 100 * r["regret"])
        ax.annotate(r["strategy"], point, textcoords="offset points", xytext=(6, 4), fontsize=7)
    ax.axhline(0.5, linestyle="--", color="grey", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("FLOPs trained to choose the LR (target run included)")
    ax.set_ylabel("regret vs own parametrization's best (%)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Choosing the LR of {data['target']}: regret against compute ({data['device']})")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    args.image.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.image)


if __name__ == "__main__":
    main()
