"""One exception root: every exception class the project defines (under flows/, tasks/ and
blocks/) subclasses tasks.errors.FleetError, keeping the stdlib base its callers catch."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

from tasks.errors import FleetError

ROOT = Path(__file__).resolve().parents[3]
PRODUCT = ("flows", "tasks", "blocks")
# imported for their side effects only: `python -m flows` runs the CLI; the fork server's
# last module loads Prefect's collections and freezes the garbage collector
NOT_IMPORTED = {"flows.__main__", "tasks.forked_freeze"}


def module_names() -> list[str]:
    names = []
    for pkg in PRODUCT:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            parts = f.relative_to(ROOT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_the_walk_sees_every_module() -> None:
    names = module_names()
    assert {"tasks.planning", "tasks.aws.cleanup", "blocks.aws_credentials"} <= set(names)
    for name in NOT_IMPORTED:  # skipped ones define no class at all
        path = ROOT / f"{name.replace('.', '/')}.py"
        tree = ast.parse(path.read_text())
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)], name


def test_every_project_exception_is_a_fleet_error() -> None:
    found: dict[str, type[BaseException]] = {}
    for name in module_names():
        if name in NOT_IMPORTED or name.endswith(".__main__"):
            continue
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == name and issubclass(cls, BaseException):
                found[f"{name}.{cls.__qualname__}"] = cls
    assert "tasks.planning.PlanError" in found and "tasks.errors.StageError" in found
    stray = sorted(n for n, cls in found.items() if not issubclass(cls, FleetError))
    assert not stray, f"not subclasses of FleetError: {stray}"


@pytest.mark.parametrize(
    ("path", "name", "base"),
    [  # callers that catch the stdlib base still catch them
        ("tasks.planning", "PlanError", ValueError),
        ("tasks.bench.matrix", "MatrixError", ValueError),
        ("tasks.remote.key_source", "KeyUnavailable", ValueError),
        ("tasks.aws.cleanup", "StageError", RuntimeError),
        ("tasks.aws.ec2", "StageError", RuntimeError),  # the path other modules import
        ("tasks.deploy.found", "MissingStage", RuntimeError),
        ("tasks.remote.connection", "RemoteError", RuntimeError),
        ("tasks.aws.client", "WaitTimeout", RuntimeError),
        ("tasks.aws.retry", "RetriesExhausted", RuntimeError),
        ("blocks.aws_credentials", "BlockNotFound", LookupError),
    ],
)
def test_the_stdlib_bases_are_kept(path: str, name: str, base: type[BaseException]) -> None:
    cls = getattr(importlib.import_module(path), name)
    assert issubclass(cls, FleetError) and issubclass(cls, base)
