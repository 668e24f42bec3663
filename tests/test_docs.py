import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_docs_build_strict(tmp_path):
    mkdocs = Path(sys.executable).parent / "mkdocs"
    assert mkdocs.exists(), "mkdocs is not installed: install the dev extra"
    out = subprocess.run(
        [mkdocs, "build", "--strict", "-d", str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr


#: The pages whose Python blocks must run as written.
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: A block preceded by this comment is not run here; the comment says why and what covers it.
SKIP = "<!-- docs-test: skip"


def python_blocks() -> list[tuple[str, int, str, str | None]]:
    """(page, line, code, skip reason) of every ```python block of the pages."""
    blocks = []
    for page in PAGES:
        lines = page.read_text().splitlines()
        for start, line in enumerate(lines):
            if line.strip() != "```python":
                continue
            end = next(i for i in range(start + 1, len(lines)) if lines[i].strip() == "```")
            before = next((lines[i] for i in range(start - 1, -1, -1) if lines[i].strip()), "")
            reason = before.strip()[len(SKIP) :].removesuffix("-->").strip() if before.startswith(SKIP) else None
            blocks.append((page.relative_to(ROOT).as_posix(), start + 1, "\n".join(lines[start + 1 : end]), reason))
    return blocks


@pytest.fixture(scope="module")
def climbed_ladder(tmp_path_factory) -> Path:
    """A climbed ladder (named "ladder", as the CLI names it) of an analytic trainer: what
    the figure blocks read, without training a model."""
    import math

    from optuna_lrlaw import Scale
    from optuna_lrlaw.ladder import TrainerRung, run_ladder

    def train_at(params):
        def train(lr, trial):
            return 3.0 + 0.05 * math.log(lr / (3e-3 * (params / 1e4) ** -0.5)) ** 2

        return train

    path = tmp_path_factory.mktemp("ladder") / "optuna-lrlaw.db"
    rungs = [TrainerRung(f"r{n:.0e}", Scale(params=n, tokens=20 * n), train_at(n)) for n in (1e4, 4e4, 1.6e5)]
    run_ladder(rungs, storage=f"sqlite:///{path}", trials=6)
    return path


BLOCKS = python_blocks()


def test_the_pages_have_python_blocks_and_every_skip_says_why():
    assert len(BLOCKS) >= 8
    for page, line, _, reason in BLOCKS:
        assert reason is None or len(reason) > 20, f"{page}:{line}: a skipped block must say why"


@pytest.mark.parametrize(("page", "line", "code", "reason"), BLOCKS, ids=[f"{p}:{n}" for p, n, _, _ in BLOCKS])
def test_every_python_block_runs_as_written(page, line, code, reason, tmp_path, climbed_ladder):
    """Each block runs alone in a fresh folder that has the repository's examples/ and
    package/ and a climbed ladder in optuna-lrlaw.db, as a reader's checkout after the main
    job would."""
    if reason is not None:
        pytest.skip(reason)
    for folder in ("examples", "package"):
        (tmp_path / folder).symlink_to(ROOT / folder)
    shutil.copy(climbed_ladder, tmp_path / "optuna-lrlaw.db")
    env = {**os.environ, "PLOTLY_RENDERER": "json", "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert done.returncode == 0, f"{page}:{line} failed:\n{done.stderr[-3000:]}"
