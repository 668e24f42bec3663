"""The OptunaHub package passes the registry's own checks (optuna/optunahub-registry: the
front matter its header check and site build parse, ruff, ruff-format and mypy with its
settings, mdformat with mdformat-myst) and its example runs as the registry runs it."""

import re
import runpy
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = ROOT / "package"
PACKAGE = REGISTRY / "samplers" / "lr_scaling_law"
HEADER_KEYS = {"author", "title", "description", "tags", "optuna_versions", "license"}


def front_matter() -> dict:
    text = (PACKAGE / "README.md").read_text()
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert match, "README.md must open with a front matter block"
    return yaml.safe_load(match.group(1))


def test_the_front_matter_is_yaml_with_every_key_the_registry_asks_for():
    header = front_matter()
    assert set(header) == HEADER_KEYS and all(header[key] not in ("", None) for key in HEADER_KEYS)
    assert {"sampler", "pruner"} <= set(header["tags"])  # it exports LRLawPruner too
    assert " " in header["title"] and "LRLaw" not in header["title"]  # words, not a class name
    # Every Optuna version listed is one the package's own requirement allows.
    (optuna,) = [Requirement(r) for r in metadata.requires("optuna-lrlaw") if Requirement(r).name == "optuna"]
    assert all(Version(str(v)) in optuna.specifier for v in header["optuna_versions"])


def test_the_package_has_its_files_a_pinned_requirement_and_an_image():
    assert {"README.md", "LICENSE", "__init__.py", "example.py", "requirements.txt"} <= {
        p.name for p in PACKAGE.iterdir()
    }
    (requirement,) = (PACKAGE / "requirements.txt").read_text().split()
    assert Requirement(requirement).name == "optuna-lrlaw" and str(Requirement(requirement).specifier).startswith("==")
    images = list((PACKAGE / "images").glob("*.png"))
    assert images and all(image.stat().st_size < 300_000 for image in images)
    readme = (PACKAGE / "README.md").read_text()
    assert all(f"images/{image.name}" in readme for image in images) and "<" not in readme.split("---")[-1]


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["ruff", "ruff-format"])
def test_ruff_passes_with_the_registry_settings(command):
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    if ruff is None:
        pytest.skip("ruff is not installed: install the dev extra")
    # package/ruff.toml holds the registry's settings (line length 99, single-line imports).
    done = subprocess.run([ruff, *command, str(REGISTRY)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_passes_with_the_registry_settings():
    mypy = shutil.which("mypy", path=str(Path(sys.executable).parent))
    if mypy is None:
        pytest.skip("mypy is not installed: install the dev extra")
    done = subprocess.run(
        [mypy, "--config-file", str(REGISTRY / "mypy.ini"), "--no-incremental", str(PACKAGE)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0 and "unused section" not in done.stdout + done.stderr, done.stdout + done.stderr


def test_mdformat_with_myst_leaves_the_readme_unchanged():
    mdformat = shutil.which("mdformat", path=str(Path(sys.executable).parent))
    if mdformat is None:
        pytest.skip("mdformat is not installed: install the dev extra")
    done = subprocess.run([mdformat, "--check", str(PACKAGE / "README.md")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_example_runs_as_the_registry_runs_it(monkeypatch, capsys):
    """``optunahub.load_module("samplers/lr_scaling_law")``, answered from this checkout."""
    optunahub = pytest.importorskip("optunahub")
    local = optunahub.load_local_module

    def load_module(package, **_):
        return local(package, registry_root=str(REGISTRY))

    monkeypatch.setattr(optunahub, "load_module", load_module)
    runpy.run_path(str(PACKAGE / "example.py"), run_name="__main__")
    printed = capsys.readouterr().out
    best, true = map(float, re.search(r"best trial lr ([\d.e-]+) \(true ([\d.e-]+)\)", printed).groups())
    assert abs(best / true - 1) < 0.5
