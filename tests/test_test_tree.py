"""The test tree stays a tree: test modules share helpers through tests/support, never through each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def _imported_modules(path: Path) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            found += [f"{node.module}.{alias.name}" for alias in node.names]
    return found


def _is_test_module(module: str) -> bool:
    parts = module.split(".")
    return parts[0] == "tests" and (parts[-1].startswith("test_") or parts[-1] == "conftest")


@pytest.mark.parametrize("path", sorted(TESTS.rglob("*.py")), ids=lambda p: str(p.relative_to(TESTS)))
def test_no_module_imports_a_test_module_or_conftest(path: Path) -> None:
    wrong = [m for m in _imported_modules(path) if _is_test_module(m)]
    assert wrong == [], f"{path.relative_to(TESTS)} imports {wrong}: move what it needs to tests/support"


def test_conftest_holds_only_fixtures() -> None:
    tree = ast.parse((TESTS / "conftest.py").read_text(encoding="utf-8"))
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef | ast.ClassDef)]
    not_fixtures = [
        node.name
        for node in functions
        if not any("fixture" in ast.unparse(decorator) for decorator in getattr(node, "decorator_list", []))
    ]
    assert not_fixtures == [], f"tests/conftest.py defines helpers {not_fixtures}: move them to tests/support"
