"""`benchmarks/gpu_probe.py`, the one device call of issue "Many trials at once on one GPU",
runs end to end on the CPU at tiny sizes: when a GPU is lent, it is one command."""

import json
import subprocess
import sys
from pathlib import Path

PROBE = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_probe.py"


def test_the_gpu_probe_runs_end_to_end_on_the_cpu(tmp_path):
    done = subprocess.run(
        [sys.executable, str(PROBE), "--device", "cpu", "--tiny", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_probe.json").read_text())
    assert report["machine"]["torch"] and report["seconds"] > 0
    assert [row["n_experts"] for row in report["mfu"]] == [0, 4]
    assert all(row["tokens_per_second"] > 0 and row["mfu"] is None for row in report["mfu"])
    assert [row["processes"] for row in report["k_scaling"]] == [1, 2]
    assert report["k_scaling"][0]["speedup"] == 1.0
    assert [climb["jobs"] for climb in report["main_job"]] == [1, 2]
    for climb in report["main_job"]:
        assert all(r["searched_runs"] == 3 and not r["lr_twice"] and r["unfinished"] == 0 for r in climb["rungs"])
    assert [row["run"] for row in report["gpu_preset"]] == ["top rung", "target"]
    assert all(row["steps"] > 0 and row["epochs"] < 1 for row in report["gpu_preset"])
    assert not list(tmp_path.glob("*.db"))  # only the JSON comes back from a device call
