"""One device call that measures what issue "Many trials at once on one GPU" asks, into one JSON.

    python benchmarks/gpu_probe.py --out $OUT                       # one H100/H200, about 7 minutes
    python benchmarks/gpu_probe.py --device cpu --tiny --out /tmp/probe   # the same code path, small

On the device machine (no optuna there): carry wheels made here, install them, then run:

    pip download --no-deps optuna==5.0.0 alembic sqlalchemy mako colorlog greenlet --python-version 3.12 \\
        --only-binary=:all: --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \\
        --platform manylinux_2_28_x86_64 -d .wheels
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .wheels/*.whl
    PYTHONPATH=/tmp/site:$PWD python3 benchmarks/gpu_probe.py --out $OUT

Sections, each written to ``gpu_probe.json`` as soon as it ends (a call cut short keeps what
it measured), each skipped, and said so, when the time left (``--budget``) is too short:

1. ``mfu``: tokens/s and MFU of `train_proxy` on dense and MoE proxies, compiled and eager;
2. ``k_scaling``: K processes side by side, each a width-64 run, aggregate tokens/s by K;
3. ``main_job``: the README's main job with ``--jobs 1`` and ``--jobs 8`` (`jobs.py`'s check:
   budgets exact, no LR twice);
4. ``gpu_preset``: one rung run and the target run of the comparison's GPU preset.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jobs import climb  # noqa: E402  (a sibling script)

from optuna_lrlaw.ladder import comparison_plan, default_rungs  # noqa: E402
from optuna_lrlaw.proxies import ProxyConfig, TrainConfig, train_proxy  # noqa: E402

#: (width, depth, heads, n_experts, top_k, compiled) per case, as in the issue's table.
MFU_CASES = {
    "full": [
        (512, 8, 8, 0, 1, True),
        (512, 8, 8, 0, 1, False),
        (768, 12, 12, 0, 1, True),
        (768, 12, 12, 0, 1, False),
        (1024, 16, 16, 0, 1, True),
        (512, 8, 8, 8, 2, True),
        (512, 8, 8, 8, 2, False),
    ],
    "tiny": [(32, 1, 2, 0, 1, False), (32, 1, 2, 4, 2, False)],
}
SIZES = {
    "full": {"seq_len": 1024, "batch_size": 32, "mfu_steps": 30, "k_steps": 480, "ks": (1, 4, 8)},
    "tiny": {"seq_len": 32, "batch_size": 4, "mfu_steps": 8, "k_steps": 8, "ks": (1, 2)},
}
MAIN_JOB = {"full": ("1,8", ""), "tiny": ("1,2", "--widths 16,24 --depth 1 --head-dim 8 --seq-len 32 --trials 3")}
#: What each section is expected to take on one H200 (seconds), to skip it when the time left is shorter.
EXPECTED_SECONDS = {"mfu": 150, "k_scaling": 60, "main_job": 120, "gpu_preset": 60}

K_WORKER = """
import json, sys
from optuna_lrlaw.proxies import ProxyConfig, TrainConfig, train_proxy
steps, seq, batch, device = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
model = ProxyConfig(width=64, depth=2, heads=4, seq_len=seq)
result = train_proxy(TrainConfig(model, lr=3e-3, tokens=steps * seq * batch, batch_size=batch, evals=1,
                                 eval_batches=1), device=device)
print(json.dumps({"tokens": result.tokens, "tokens_per_second": result.tokens_per_second}))
"""


def mfu_table(size: dict, cases: list, device: str) -> list[dict]:
    rows = []
    for width, depth, heads, experts, top_k, compiled in cases:
        model = ProxyConfig(
            width=width, depth=depth, heads=heads, n_experts=experts, top_k=top_k, seq_len=size["seq_len"]
        )
        tokens = size["mfu_steps"] * size["batch_size"] * size["seq_len"]
        config = TrainConfig(
            model, lr=1e-3, tokens=tokens, batch_size=size["batch_size"], evals=1, eval_batches=1, compile=compiled
        )
        started = time.perf_counter()
        result = train_proxy(config, device=device)
        rows.append(
            {
                "width": width,
                "depth": depth,
                "n_experts": experts,
                "top_k": top_k,
                "params": model.params(),
                "active_params": model.active_params(),
                "compiled": compiled,
                "tokens_per_second": result.tokens_per_second,
                "mfu": result.mfu,
                "wall_seconds": time.perf_counter() - started,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def k_scaling(size: dict, device: str) -> list[dict]:
    rows = []
    for k in size["ks"]:
        args = [str(size["k_steps"]), str(size["seq_len"]), str(size["batch_size"]), device]
        started = time.perf_counter()
        workers = [
            subprocess.Popen([sys.executable, "-c", K_WORKER, *args], stdout=subprocess.PIPE, text=True)
            for _ in range(k)
        ]
        results = [json.loads(w.communicate()[0].strip().splitlines()[-1]) for w in workers]
        wall = time.perf_counter() - started
        rows.append(
            {
                "processes": k,
                "wall_seconds": wall,
                "aggregate_tokens_per_second": sum(r["tokens"] for r in results) / wall,
                "per_process_tokens_per_second": [r["tokens_per_second"] for r in results],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["aggregate_tokens_per_second"]
    for row in rows:
        row["speedup"] = row["aggregate_tokens_per_second"] / base
    return rows


def main_job(jobs: list[int], device: str, extra: list[str]) -> list[dict]:
    """The README's main job at each job count, in fresh SQLite files that stay here."""
    with tempfile.TemporaryDirectory() as folder:
        return [climb(k, device, extra, Path(folder)) for k in jobs]


def gpu_preset(device: str, tiny: bool) -> list[dict]:
    plan = comparison_plan("gpu")
    rung, target = plan.rungs[-1], plan.target
    if tiny:
        rung, target = default_rungs((16, 24), depth=1, head_dim=8, seq_len=32, batch_size=4, tokens_per_param=2.0)
    rows = []
    for label, which in (("top rung", rung), ("target", target)):
        config = TrainConfig(which.model, lr=3e-3, tokens=which.tokens, batch_size=which.batch_size, evals=4)
        started = time.perf_counter()
        result = train_proxy(config, device=device)
        rows.append(
            {
                "run": label,
                "rung": which.name,
                "params": which.scale().params,
                "steps": result.steps,
                "wall_seconds": time.perf_counter() - started,
                "tokens_per_second": result.tokens_per_second,
                "mfu": result.mfu,
                "epochs": result.epochs,
                "final_loss": result.final_loss,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def machine(device: str) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "host": platform.node()}
    if device.startswith("cuda") and torch.cuda.is_available():
        info |= {"gpu": torch.cuda.get_device_name(0), "cuda": torch.version.cuda}
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="small sizes: the code path on a CPU, in a test")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds the whole probe may take")
    parser.add_argument("--out", type=Path, required=True, help="a folder; the JSON is gpu_probe.json in it")
    args = parser.parse_args()
    size_name = "tiny" if args.tiny else "full"
    size = SIZES[size_name]
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, object] = {"command": "python " + " ".join(sys.argv), "machine": machine(args.device)}
    started = time.perf_counter()
    jobs, extra = MAIN_JOB[size_name]
    sections = {
        "mfu": lambda: mfu_table(size, MFU_CASES[size_name], args.device),
        "k_scaling": lambda: k_scaling(size, args.device),
        "main_job": lambda: main_job([int(k) for k in jobs.split(",")], args.device, extra.split()),
        "gpu_preset": lambda: gpu_preset(args.device, args.tiny),
    }
    for name, run in sections.items():
        left = args.budget - (time.perf_counter() - started)
        if not args.tiny and left < EXPECTED_SECONDS[name]:
            report[name] = {"skipped": f"{left:.0f} s left, {EXPECTED_SECONDS[name]} s expected"}
        else:
            try:
                report[name] = run()
            except Exception as error:  # one section's failure must not lose the others
                report[name] = {"failed": f"{type(error).__name__}: {error}"}
        report["seconds"] = time.perf_counter() - started
        (args.out / "gpu_probe.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({"seconds": report["seconds"], "out": str(args.out / "gpu_probe.json")}))


if __name__ == "__main__":
    main()
