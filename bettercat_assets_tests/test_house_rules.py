"""The house rules of docs/architecture.md, checked: short functions, modules of one concept,
and import contracts that actually bite."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "bettercat_assets"
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_function_over_60_lines():
    long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines})")
    assert not long, long


def test_no_module_over_400_lines():
    big = {
        str(p.relative_to(REPO)): n
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not big, big


def test_no_core_module_shadows_the_standard_library():
    shadowing = [
        p.relative_to(REPO)
        for p in (PACKAGE / "core").rglob("*.py")
        if p.stem in sys.stdlib_module_names
    ]
    assert not shadowing, shadowing


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("core/data/quality.py", "import dagster\n", "core imports neither Dagster"),
        (
            "core/config/paths.py",
            "from bettercat_assets.core.training import train\n",
            "form layers",
        ),
        ("core/model/topk.py", "import sklearn\n", "workers' modules"),
    ],
)
def test_a_wrong_import_breaks_its_contract(tmp_path, module, line, broken):
    """lint-imports (make lint) fails on each kind of wrong import, naming the contract."""
    copy = tmp_path / "repo"
    shutil.copytree(
        PACKAGE, copy / "bettercat_assets", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    target = copy / "bettercat_assets" / module
    target.write_text(target.read_text() + "\n" + line)
    lint = Path(sys.executable).with_name("lint-imports")
    ok = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout
    bad = subprocess.run(
        [str(lint), "--no-cache"],
        cwd=copy,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"},
    )
    assert bad.returncode != 0, bad.stdout
    assert broken in bad.stdout.replace("\n", " "), bad.stdout


def test_no_import_cycles_in_the_package_or_the_bench():
    import grimp

    graph = grimp.build_graph("bettercat_assets", "bench")
    cycles = sorted(
        {
            tuple(sorted((importer, imported)))
            for importer in graph.modules
            for imported in graph.find_modules_directly_imported_by(importer)
            if imported != importer
            and imported in graph.modules
            and graph.chain_exists(importer=imported, imported=importer)
        }
    )
    assert not cycles, cycles
