import ast
from pathlib import Path

import optuna_lrlaw

SCIENCE = Path(optuna_lrlaw.__file__).parent / "science"


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_science_imports_neither_torch_nor_optuna():
    modules = sorted(SCIENCE.glob("*.py"))
    assert modules
    for path in modules:
        assert not imported_roots(path) & {"torch", "optuna"}, path.name


def test_only_the_proxies_import_torch():
    package = SCIENCE.parent
    for path in sorted(package.rglob("*.py")):
        if "proxies" in path.parts:
            continue
        assert "torch" not in imported_roots(path), path.relative_to(package)


def test_the_law_and_the_plugin_load_without_torch():
    import subprocess
    import sys

    code = "import sys, optuna_lrlaw; from optuna_lrlaw.cli import app; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    from optuna_lrlaw import ProxyConfig, proxies

    assert ProxyConfig is proxies.ProxyConfig


def test_the_ladder_is_exported_lazily():
    import optuna_lrlaw
    from optuna_lrlaw import ladder

    assert optuna_lrlaw.run_ladder is ladder.run_ladder and optuna_lrlaw.Rung is ladder.Rung
    assert {"Rung", "default_rungs", "run_ladder"} <= set(optuna_lrlaw.__all__)


#: The package's rooms, bottom to top: a module may import its own room and those below it.
ROOMS = ("science", "integration", "proxies", "ladder", "visualization", "cli")


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports (in functions and TYPE_CHECKING blocks too), relative ones resolved."""
    package = path.relative_to(SCIENCE.parent.parent).with_suffix("").parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found |= {module} | {f"{module}.{alias.name}" for alias in node.names}
    return found


def test_no_room_imports_a_room_above_it():
    package = SCIENCE.parent
    checked = 0
    for room, name in enumerate(ROOMS):
        for path in sorted((package / name).rglob("*.py")):
            rooms = {m.split(".")[1] for m in imported_modules(path) if m.startswith("optuna_lrlaw.")}
            above = {r for r in rooms if r in ROOMS and ROOMS.index(r) > room}
            assert not above, f"{path.relative_to(package)} imports {sorted(above)}, above {name}"
            checked += 1
    assert checked == len([p for p in package.rglob("*.py") if p.parent != package])  # every room is listed
