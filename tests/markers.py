"""Marks every collected test `unit` or `e2e` (tests/conftest.py imports the hook), so no test file lists them.

A test is `e2e` when it, a fixture it uses, or a function of the tests' own code that either calls (followed
transitively through module-level functions) names one of E2E_NAMES: the CLI in a subprocess, `subprocess`
itself, a sweep (`run_sweep`, `run_interleaved`: one worker process per point). Everything else is `unit`. An
explicit `@pytest.mark.unit` or `@pytest.mark.e2e` on a test wins. `make test-fast` runs `-m "not e2e"`."""

from __future__ import annotations

import inspect
import types
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

E2E_NAMES = frozenset({"run_cli", "cli", "subprocess", "Popen", "run_sweep", "run_interleaved"})


def _ours(func) -> bool:
    code = getattr(inspect.unwrap(func), "__code__", None)
    return code is not None and TESTS in Path(code.co_filename).resolve().parents


def _names(func, seen: set) -> set[str]:
    """Global and attribute names that `func` and the tests' own functions it names refer to, transitively."""
    func = inspect.unwrap(func)
    code = func.__code__
    if code in seen:
        return set()
    seen.add(code)
    names: set[str] = set()
    stack = [code]
    while stack:  # nested functions and comprehensions are code objects among the constants
        c = stack.pop()
        names.update(c.co_names)
        stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    for name in list(names):
        target = func.__globals__.get(name)
        if inspect.isfunction(target) and _ours(target):
            names |= _names(target, seen)
    return names


def is_e2e(item: pytest.Item) -> bool:
    if E2E_NAMES & set(getattr(item, "fixturenames", ())):
        return True
    funcs = [item.function] if hasattr(item, "function") else []
    for defs in getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {}).values():
        funcs.extend(d.func for d in defs if _ours(d.func))  # the tests' own fixtures, not pytest's
    seen: set = set()
    return any(E2E_NAMES & _names(f, seen) for f in funcs)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("e2e") or item.get_closest_marker("unit"):
            continue
        item.add_marker(pytest.mark.e2e if is_e2e(item) else pytest.mark.unit)
