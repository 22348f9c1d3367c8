"""docs/settings.md is what `python -m blocks.settings_doc` writes from FleetSettings and
RuntimeSettings; every `TOMCAT_FLEET_*` variable the product names is one of their fields,
and none is read from the environment anywhere but through them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from blocks.settings import FleetSettings, RuntimeSettings
from blocks.settings_doc import render

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "settings.md"
CLASSES = (FleetSettings, RuntimeSettings)
PRODUCT = ("flows", "tasks", "blocks")


def _fields() -> set[str]:
    return {name for cls in CLASSES for name in cls.model_fields}


def _product_files() -> list[Path]:
    return sorted(f for pkg in PRODUCT for f in (ROOT / pkg).rglob("*.py"))


def test_every_setting_has_a_description() -> None:
    missing = [
        f"{cls.__name__}.{n}"
        for cls in CLASSES
        for n, f in cls.model_fields.items()
        if not f.description
    ]
    assert not missing, f"settings without a description: {missing}"


def test_an_empty_runtime_variable_is_an_unset_one(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in RuntimeSettings.model_fields:
        monkeypatch.setenv(f"TOMCAT_FLEET_{name.upper()}", "")
    read = RuntimeSettings(_env_file=None)  # type: ignore[call-arg]
    defaults = {n: f.default for n, f in RuntimeSettings.model_fields.items()}
    assert read.model_dump() == defaults


def test_the_two_classes_share_no_name() -> None:
    assert not set(FleetSettings.model_fields) & set(RuntimeSettings.model_fields)


def test_settings_doc_is_current() -> None:
    text = render()
    for name in _fields():
        assert f"`TOMCAT_FLEET_{name.upper()}`" in text
    assert DOC.read_text() == text, (
        "docs/settings.md is stale: python -m blocks.settings_doc > docs/settings.md"
    )


def test_every_variable_the_product_names_is_a_setting() -> None:
    named = {
        m.lower()
        for f in _product_files()
        for m in re.findall(r"TOMCAT_FLEET_([A-Z0-9_]+)", f.read_text())
    }
    assert named, "no TOMCAT_FLEET_ name found"
    assert named <= _fields(), f"not settings: {sorted(named - _fields())}"


def _environ_reads(source: str) -> list[int]:
    """Lines reading a TOMCAT_FLEET_* variable from os.environ / os.getenv (writes, and
    environments built for child processes, are not reads)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        key: ast.expr | None = None
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            on_environ = (
                isinstance(func, ast.Attribute)
                and func.attr in ("get", "pop", "setdefault")
                and "environ" in ast.unparse(func.value)
            )
            if on_environ or (
                isinstance(func, ast.Attribute | ast.Name) and "getenv" in ast.unparse(func)
            ):
                key = node.args[0]
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Load)
            and "environ" in ast.unparse(node.value)
        ):
            key = node.slice
        if (
            isinstance(key, ast.Constant)
            and isinstance(key.value, str)
            and key.value.startswith("TOMCAT_FLEET_")
        ):
            lines.append(node.lineno)
    return sorted(lines)


def test_no_setting_is_read_from_the_environment_directly() -> None:
    reads = [
        f"{f.relative_to(ROOT)}:{n}"
        for f in _product_files()
        if f != ROOT / "blocks" / "settings.py"
        for n in _environ_reads(f.read_text())
    ]
    assert not reads, f"read through blocks.settings instead: {reads}"


def test_the_read_check_sees_reads() -> None:
    source = (
        "import os\n"
        "a = os.environ.get('TOMCAT_FLEET_X', 'y')\n"
        "b = os.getenv('TOMCAT_FLEET_X')\n"
        "c = os.environ['TOMCAT_FLEET_X']\n"
        "os.environ['TOMCAT_FLEET_X'] = 'written'\n"
        "env = {'TOMCAT_FLEET_X': 'for a child'}\n"
        "d = os.environ.get('PREFECT_API_URL')\n"
    )
    assert _environ_reads(source) == [2, 3, 4]
