"""The layout rules a maintainer relies on: every module of jaxreg, torch_ref and the parity
harness (parity_tests' modules other than the tests) has an
``__all__``, no module imports another module's private names (shared helpers live in the
private ``_numerics``/``_transforms``/... modules under public names), and modules stay
small enough to read."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(
    p for package in ("jaxreg", "torch_ref") for p in (ROOT / package).glob("*.py")
) + sorted(p for p in (ROOT / "parity_tests").glob("*.py") if not p.name.startswith("test_"))
#: A module longer than this is split (a soft limit: "a few hundred lines at most").
MAX_LINES = 470
#: Modules allowed past the limit, with the reason. Their kernels and derivative rules are
#: already in private modules; what is left is public functions and their docstrings.
LONGER = {
    "jaxreg/information.py": 640,  # 12 public functions; ~300 lines are their docstrings
    "torch_ref/information.py": 570,  # its mirror: ~310 lines of docstrings
}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_module_imports_another_modules_private_names(path):
    bad = [
        f"line {node.lineno}: from {node.module} import {alias.name}"
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.ImportFrom) and node.module
        if node.module.split(".")[0] in ("jaxreg", "torch_ref", "parity_tests")
        for alias in node.names
        if alias.name.startswith("_") and node.module not in ("jaxreg", "torch_ref")
    ]
    assert not bad, bad


@pytest.mark.parametrize(
    "path",
    [p for p in MODULES if p.name not in ("__init__.py", "__main__.py")],
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_every_module_has_all(path):
    names = {
        target.id
        for node in _tree(path).body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }
    assert "__all__" in names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_modules_stay_small(path):
    lines = len(path.read_text().splitlines())
    limit = LONGER.get(f"{path.parent.name}/{path.name}", MAX_LINES)
    assert lines <= limit, f"{path.name} has {lines} lines: split it"
