"""Which ORDERLY_* settings an app reads, found in its code rather than kept in a list.

Every app loads ``orderly_platform.settings.Settings`` from the environment, itself or through a
platform function that does (``orderly_platform.http.run_service``); what it reads are the fields
used: ``settings.<field>`` (or ``app[SETTINGS].<field>``) in its package and in that function.
When an app hands the whole settings to code outside its package, or loads them in a way this
analysis does not see, it says so: a new way of reading settings fails the tests instead of
going unseen.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

from orderly_platform.settings import ENV_PREFIX, Settings

SETTINGS_FIELDS = frozenset(Settings.__struct_fields__)


class UnfollowedSettings(AssertionError):
    """The app passes its settings to code outside its package."""


def app_dir(app: str) -> Path:
    spec = importlib.util.find_spec(app)
    assert spec is not None and spec.origin is not None, f"no package {app}"
    return Path(spec.origin).parent


def app_sources(app: str) -> list[Path]:
    return sorted(
        path
        for path in app_dir(app).glob("*.py")
        if not path.name.endswith("_test.py") and path.name != "conftest.py"
    )


def _is_settings(node: ast.expr) -> bool:
    """``settings``, or ``<app>[SETTINGS]`` (the aiohttp app key that holds the Settings)."""
    if isinstance(node, ast.Name):
        return node.id == "settings"
    return (
        isinstance(node, ast.Subscript)
        and isinstance(node.slice, ast.Name)
        and node.slice.id == "SETTINGS"
    )


def _local_names(trees: list[ast.Module]) -> set[str]:
    return {
        node.name
        for tree in trees
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }


def _called_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _fields_used(tree: ast.AST) -> set[str]:
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and _is_settings(node.value)
        and node.attr in SETTINGS_FIELDS
    }


def _calls_load_settings(tree: ast.AST) -> bool:
    return any(
        isinstance(node, ast.Call) and _called_name(node.func) == "load_settings"
        for node in ast.walk(tree)
    )


def _imported_names(trees: list[ast.Module]) -> dict[str, str]:
    """Name -> module, for every ``from <module> import <name>``."""
    return {
        alias.asname or alias.name: node.module
        for tree in trees
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }


def _settings_loader_fields(module: str, function: str) -> set[str] | None:
    """The fields read by ``module.function`` if it loads the settings itself, else None."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    tree = ast.parse(Path(spec.origin).read_text(), spec.origin)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            return _fields_used(node) if _calls_load_settings(node) else None
    return None


def settings_read_by(app: str) -> set[str]:
    """The ``ORDERLY_*`` variables of Settings that the app's code reads."""
    trees = [ast.parse(path.read_text(), str(path)) for path in app_sources(app)]
    local = _local_names(trees)
    imported = _imported_names(trees)
    fields: set[str] = set()
    loads_settings = False
    for tree in trees:
        fields |= _fields_used(tree)
        loads_settings = loads_settings or _calls_load_settings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                called = _called_name(node.func)
                if called in imported and called != "load_settings":
                    loader = _settings_loader_fields(imported[called], called)
                    if loader is not None:
                        fields |= loader
                        loads_settings = True
                arguments = [*node.args, *(keyword.value for keyword in node.keywords)]
                if called not in local and any(_is_settings(a) for a in arguments):
                    raise UnfollowedSettings(
                        f"{app} passes its settings to {ast.unparse(node.func)}(), outside "
                        "its package: teach tests/deploy/settings_reads.py what that reads"
                    )
    if not loads_settings:
        raise UnfollowedSettings(
            f"cannot find where {app} loads its settings (load_settings, or a platform function "
            "that calls it): teach tests/deploy/settings_reads.py"
        )
    return {ENV_PREFIX + field.upper() for field in fields}
