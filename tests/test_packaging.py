"""The package as a user gets it: a wheel and an sdist that twine accepts, and a CLI that
runs from the installed wheel, away from the checkout."""

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import optuna_lrlaw

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    pytest.importorskip("build")
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return out


def test_the_wheel_and_sdist_pass_twine_check_and_carry_the_version(dist):
    pytest.importorskip("twine")
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    assert f"-{optuna_lrlaw.__version__}-" in wheel.name and sdist.name.endswith(f"-{optuna_lrlaw.__version__}.tar.gz")
    checked = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    names = zipfile.ZipFile(wheel).namelist()
    assert "optuna_lrlaw/py.typed" in names and "optuna_lrlaw/science/law.py" in names
    assert not any(name.startswith(("tests/", "benchmarks/", "examples/")) for name in names)


def test_the_cli_runs_from_the_installed_wheel(dist, tmp_path):
    """A fresh venv gets the package from the wheel alone; its dependencies are borrowed from
    this environment's site-packages (a path entry, so its editable install stays out)."""
    (wheel,) = dist.glob("*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], capture_output=True, text=True
    ).stdout.strip()
    (Path(site) / "borrowed_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    installed = subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], capture_output=True, text=True
    )
    assert installed.returncode == 0, installed.stderr
    where = subprocess.run(
        [python, "-c", "import optuna_lrlaw; print(optuna_lrlaw.__file__, optuna_lrlaw.__version__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert where.returncode == 0, where.stderr
    path, version = where.stdout.split()
    assert Path(path).is_relative_to(site) and version == optuna_lrlaw.__version__
    helped = subprocess.run([venv / "bin" / "optuna-lrlaw", "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert "ladder" in helped.stdout and "fit" in helped.stdout
