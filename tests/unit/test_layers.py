"""The product (flows/, tasks/, blocks/) never imports the sandbox: it starts it as a separate
program (`python -m sandbox`, tasks/runtime/sandbox_process.py) and reads its env file.
Checked on the source (every import, lazy ones inside functions included), nothing imported."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("flows", "tasks", "blocks")
IMPORTERS = {"import_module", "__import__", "run_module"}  # importlib, builtins, runpy


def _is_sandbox(name: str) -> bool:
    return name == "sandbox" or name.startswith("sandbox.")


def sandbox_imports(source: str, label: str) -> list[str]:
    """`label:line` of every import of `sandbox` in `source`, at any depth."""
    tree = ast.parse(source, label)
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if called in IMPORTERS and isinstance(first, ast.Constant):
                names = [str(first.value)]
        if any(_is_sandbox(n) for n in names):
            found.append(f"{label}:{getattr(node, 'lineno', 0)}")
    return found


def product_modules() -> list[Path]:
    return sorted(f for pkg in PRODUCT for f in (ROOT / pkg).rglob("*.py"))


def test_the_product_never_imports_the_sandbox() -> None:
    files = product_modules()
    assert len(files) > 50, "the walk found too few modules"
    offenders = [
        hit for f in files for hit in sandbox_imports(f.read_text(), str(f.relative_to(ROOT)))
    ]
    assert not offenders, f"imports of sandbox in the product: {offenders}"


def test_the_check_sees_lazy_and_dynamic_imports() -> None:
    source = (
        "import os\n"
        "def f():\n"
        "    from sandbox.process import SandboxProcess\n"
        "    import sandbox\n"
        "    import importlib; importlib.import_module('sandbox.ports')\n"
        "from sandboxing import x\n"
        "from .sandbox import y\n"
    )
    assert sandbox_imports(source, "probe") == ["probe:3", "probe:4", "probe:5"]


def test_unit_tests_are_laid_out_like_the_source() -> None:
    """tests/unit/<path>/test_*.py tests the package at <path> (the project-wide checks, such
    as this one, sit in tests/unit itself): a test's folder names a source folder."""
    unit = ROOT / "tests" / "unit"
    folders = {f.parent.relative_to(unit) for f in unit.rglob("test_*.py")} - {Path(".")}
    assert len(folders) >= 8, folders
    missing = sorted(str(d) for d in folders if not (ROOT / d / "__init__.py").exists())
    assert not missing, f"test folders with no source package of the same path: {missing}"
