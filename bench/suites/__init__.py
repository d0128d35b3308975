"""Scenario suites bundled with the package (`bench/suites/NAME/*.yaml`), so `bench list`, `bench validate NAME`
and `bench run NAME` work from any directory after a plain `pip install`. A path that exists is used as it is;
otherwise a path whose first part names a bundled suite (`cpu`, `cpu/gpt2-decode.yaml`) resolves into it."""

from __future__ import annotations

from pathlib import Path

SUITES_DIR = Path(__file__).resolve().parent


def bundled() -> dict[str, Path]:
    """Suite name -> its directory, sorted by name."""
    return {d.name: d for d in sorted(SUITES_DIR.iterdir()) if d.is_dir() and not d.name.startswith(("_", "."))}


def resolve(path: str | Path) -> Path:
    """`path` itself when it exists, else the bundled suite (or file in one) it names, else `path` unchanged."""
    p = Path(path)
    if p.exists() or p.is_absolute() or not p.parts:
        return p
    suite = bundled().get(p.parts[0])
    if suite is not None and (candidate := suite.joinpath(*p.parts[1:])).exists():
        return candidate
    return p
