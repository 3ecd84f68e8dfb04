"""The floor plan's contracts that import-linter does not check: module and function size,
no private names across modules, one module that imports `openai`, a pinned public face."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import bench

PACKAGE = Path(bench.__file__).resolve().parent
REPO = PACKAGE.parent
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
SOURCES = sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _trees() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text(encoding="utf-8")) for path in SOURCES}


def test_the_package_has_modules_to_check():
    assert len(SOURCES) > 40
    assert {p.parent.name for p in SOURCES} >= {"scenario", "workload", "runner", "target", "store", "metrics",
                                                 "analysis", "report", "commands", "sim"}


def test_no_module_is_over_the_line_limit():
    long = {_name(p): n for p in SOURCES if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_no_function_is_over_the_line_limit():
    long = {}
    for path, tree in _trees().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                if (n := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES:
                    long[f"{_name(path)}.{node.name}"] = n
    assert long == {}


def _private_imports(paths: list[Path]) -> list[str]:
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bench"):
                found += [f"{path.name}: {node.module}.{a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    return found


def test_no_private_name_is_imported_across_modules():
    assert _private_imports(SOURCES + sorted((REPO / "benchmarks").glob("*.py"))) == []


def test_the_check_for_private_imports_sees_one(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from bench.runner.runner import _Attempt\nfrom bench import __version__\n")
    assert len(_private_imports([sample])) == 1


def test_openai_is_imported_by_one_module_only():
    importers = set()
    for path, tree in _trees().items():
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "openai" or n.startswith("openai.") for n in names):
                importers.add(_name(path))
    assert len(importers) == 1, importers


def test_the_public_face_is_pinned():
    assert bench.__all__ == ["__version__", "load_run"]
    assert callable(bench.load_run)
    assert isinstance(bench.__version__, str)


@pytest.mark.parametrize("module", [_name(p) for p in SOURCES if p.name not in {"__init__.py", "__main__.py"}])
def test_every_module_declares_what_it_exports(module):
    mod = importlib.import_module(module)
    exported = getattr(mod, "__all__", None)
    assert exported is not None, f"{module} has no __all__"
    assert [name for name in exported if not hasattr(mod, name)] == []
    assert [name for name in exported if name.startswith("_")] == []
