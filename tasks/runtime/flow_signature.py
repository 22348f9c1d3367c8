"""A flow function's signature and docstring read from its source, without importing it
(importing a flow imports Prefect: seconds the CLI must not spend before validating input).

`tests/test_cli.py` checks that what is read here equals `inspect.signature` of the flow."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any, Literal

PROJECT_DIR = Path(__file__).resolve().parents[2]
_BASE_NS: dict[str, Any] = {"Literal": Literal, "Any": Any}


def _module_file(module: str) -> Path | None:
    path = PROJECT_DIR.joinpath(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _names(nodes: list[ast.expr]) -> set[str]:
    """The names an expression list refers to."""
    return {n.id for node in nodes for n in ast.walk(node) if isinstance(n, ast.Name)}


def _aliases(tree: ast.Module, wanted: set[str], depth: int = 0) -> dict[str, Any]:
    """The module-level type aliases among `wanted` (`Runner = Literal[...]`), also those
    imported from the project's own modules. Only modules that provide a wanted name are
    read: the CLI builds a command from this before it imports anything heavy."""
    wanted = set(wanted)
    for node in reversed(tree.body):  # what a wanted alias is built from is wanted too
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id in wanted:
                wanted |= _names([node.value])
    ns: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and depth < 3:
            names = [a for a in node.names if (a.asname or a.name) in wanted]
            path = _module_file(node.module) if names else None
            if path is None:
                continue
            theirs = _aliases(ast.parse(path.read_text()), {a.name for a in names}, depth + 1)
            for name in names:
                if name.name in theirs:
                    ns[name.asname or name.name] = theirs[name.name]
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id in wanted:
                try:
                    ns[target.id] = eval(ast.unparse(node.value), {**_BASE_NS, **ns})
                except Exception:
                    continue
    return ns


def flow_signature(path: Path, name: str) -> tuple[inspect.Signature, str]:
    """(signature, docstring) of the function `name` defined in the file `path`.
    Annotations that cannot be resolved without imports stay strings."""
    tree = ast.parse(path.read_text())
    fn = next(
        n
        for n in tree.body
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == name
    )
    args = [*fn.args.posonlyargs, *fn.args.args]
    annotations = [a.annotation for a in [*args, *fn.args.kwonlyargs] if a.annotation]
    ns = {**_BASE_NS, **_aliases(tree, _names(annotations))}
    defaults: list[ast.expr | None] = [None] * (len(args) - len(fn.args.defaults))
    defaults += list(fn.args.defaults)
    pairs = list(zip(args, defaults, strict=True))
    pairs += list(zip(fn.args.kwonlyargs, fn.args.kw_defaults, strict=True))
    params = []
    for arg, default in pairs:
        annotation: Any = inspect.Parameter.empty
        if arg.annotation is not None:
            text = ast.unparse(arg.annotation)
            try:
                annotation = eval(text, dict(ns))
            except Exception:
                annotation = text
        kind = (
            inspect.Parameter.KEYWORD_ONLY
            if arg in fn.args.kwonlyargs
            else inspect.Parameter.POSITIONAL_OR_KEYWORD
        )
        value = inspect.Parameter.empty if default is None else ast.literal_eval(default)
        params.append(inspect.Parameter(arg.arg, kind, default=value, annotation=annotation))
    return inspect.Signature(params), ast.get_docstring(fn) or ""
