import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "data" / "synthetic_runs.csv"


def cli(*args):
    return subprocess.run(
        [sys.executable, "-c", "from optuna_lrlaw.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "120"},
    )


def test_fit_prints_law_optima_and_prediction():
    out = cli("fit", str(EXAMPLE), "--target", "params=1e8,tokens=6.4e9")
    assert out.returncode == 0, out.stderr
    assert "exponent of N (params)" in out.stdout
    assert "Optimum of each sweep" in out.stdout
    assert "Predicted lr* at params=1e+08" in out.stdout and "90% interval" in out.stdout
    assert "A search to land within 0.5% of the best loss" in out.stdout


def test_fit_json_predicts_the_known_law_within_its_interval():
    out = cli("fit", str(EXAMPLE), "--target", "params=1e8,tokens=6.4e9", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    truth = 0.5 * 1e8**-0.35 * 6.4e9**-0.05  # the law behind examples/make_synthetic_runs.py
    prediction = report["prediction"]
    assert prediction["lo90"] < truth < prediction["hi90"]
    start, stop = prediction["search_range_0.5%"]
    assert start < stop and start <= prediction["one_shot_lr"] <= stop and start <= prediction["recommended_lr"] <= stop
    assert prediction["search_runs_0.5%"] >= 1
    assert set(report["coefficients"]) == {"prefactor", "params", "tokens"}
    assert len(report["optima"]) == 8


@pytest.mark.parametrize(
    ("target", "said", "warned"),
    [
        ("params=1e8,tokens=6.4e9", "4x beyond the largest sweep in tokens", None),
        ("params=1e7,tokens=1e9", "within the range of the sweeps", None),
        ("params=1e11,tokens=6.4e12", "4e+03x beyond the largest sweep in tokens", "past 100x"),
        ("params=1e6,tokens=4e8", "2x below the smallest sweep in params", "fitted for scaling up"),
    ],
)
def test_fit_says_how_far_the_target_lies_from_the_sweeps(target, said, warned):
    """The sweeps span N 2e6..3e7 and D 4e8..1.6e9: the answer says where the target lies,
    and warns past the documented limit or below the sweeps."""
    out = cli("fit", str(EXAMPLE), "--target", target)
    assert out.returncode == 0, out.stderr
    assert f"The target lies {said}." in out.stdout
    assert ("warning:" in out.stdout) == (warned is not None)
    if warned:
        assert warned in " ".join(out.stdout.split())
    reach = json.loads(cli("fit", str(EXAMPLE), "--target", target, "--json").stdout)["prediction"]["reach"]
    words = {"above": "beyond the largest", "below": "below the smallest", "inside": "within the range"}
    assert words[reach["side"]] in said and (reach["side"] == "inside" or f"in {reach['feature']}" in said)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.csv", "--target", "params=1e8,tokens=1e9"], "missing.csv"),
        ([str(EXAMPLE), "--target", "params=1e8"], "cannot read scale"),
        ([str(EXAMPLE), "--target", "params=1e8,tokens=1e9", "--prior", "nope"], "unknown prior"),
        ([str(EXAMPLE), "--target", "params=1e8,tokens=1e9", "--batch-tokens", "1e6"], "batch_tokens"),
    ],
)
def test_bad_input_is_one_line_on_stderr_with_exit_code_2(args, message):
    out = cli("fit", *args)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_bad_table_names_column_and_row(tmp_path):
    bad = tmp_path / "runs.csv"
    bad.write_text("params,tokens,lr,loss\n1e8,1e9,0.001,3.0\n1e8,1e9,zero,2.9\n")
    out = cli("fit", str(bad), "--target", "params=1e8,tokens=1e9")
    assert out.returncode == 2
    assert "column 'lr', row 1" in out.stderr
