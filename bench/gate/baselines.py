"""Saved baselines: a run directory's records and environment, copied under a name.

    baselines/NAME/results.jsonl      the records, raw samples included (the gate needs distributions)
    baselines/NAME/environment.json   what the gate checks before comparing (GPU, driver, CUDA, torch, …)
    baselines/NAME/baseline.json      name, when, from where, git commit, what it holds

The folder is `baselines/` under the current directory, or $BENCH_BASELINE_DIR, or --dir. A team either
commits it (one baseline per runner type, refreshed on purpose) or keeps it as a CI artifact; a saved
baseline is itself a run directory, so `bench compare` and `bench report` read it like any other.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import BenchInputError
from bench.report.points import group_points, measured
from bench.report.runs import load_runs
from bench.results import ENVIRONMENT_FILE, RESULTS_FILE, now_iso, write_json

DIR_ENV = "BENCH_BASELINE_DIR"
META_FILE = "baseline.json"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


def default_dir() -> Path:
    return Path(os.environ.get(DIR_ENV) or "baselines")


@dataclass
class Saved:
    path: Path
    meta: dict[str, Any]
    warnings: list[str]


def save(run_dir: Path, name: str, directory: Path | None = None, force: bool = False) -> Saved:
    if not re.match(NAME_PATTERN, name):
        raise BenchInputError("NAME", f"{name!r}: use letters, digits, '.', '_' and '-' (not starting with . _ -)")
    run = load_runs([run_dir])[0]
    ok = [r for r in run.records if measured(r)]
    if not ok:
        raise BenchInputError(str(run_dir), "has no ok record: nothing to compare against")
    if run.environment is None:
        raise BenchInputError(str(run_dir), f"has no {ENVIRONMENT_FILE}: the gate could not check environments")
    directory = directory if directory is not None else default_dir()
    target = directory / name
    if target.exists() and not force:
        raise BenchInputError(str(target), "a baseline of that name exists; pass --force to replace it")

    points = group_points(run.records)
    repeats = Counter(len(p.ok) for p in points if p.ok)
    warnings = [
        f"{p.key.scenario}/{p.key.model}/{p.key.backend}/{p.key.precision}/bs{p.key.batch_size}: "
        f"{len(p.ok)} ok repeat(s); comparisons against it will be inconclusive (use --repeats ≥ 3)"
        for p in points
        if len(p.ok) == 1
    ]
    env = run.environment
    meta = {
        "name": name,
        "saved_at": now_iso(),
        "source": str(run_dir),
        "git_commit": env.get("git_commit"),
        "git_dirty": env.get("git_dirty"),
        "measured_at": env.get("timestamp"),
        "device": env.get("gpu_name") or (env.get("cpu") or {}).get("model"),
        "scenarios": sorted({r.scenario for r in run.records}),
        "points": len(points),
        "records": len(run.records),
        "ok_records": len(ok),
        "repeats": {str(k): v for k, v in sorted(repeats.items())},  # ok repeats per point → points
    }
    tmp = directory / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copyfile(run_dir / RESULTS_FILE, tmp / RESULTS_FILE)
    shutil.copyfile(run_dir / ENVIRONMENT_FILE, tmp / ENVIRONMENT_FILE)
    write_json(tmp / META_FILE, meta)
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    return Saved(target, meta, warnings)


def read_meta(path: Path) -> dict[str, Any] | None:
    """baseline.json of a saved baseline; None for a plain run directory (or an unreadable file)."""
    try:
        data = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def list_saved(directory: Path | None = None) -> list[tuple[Path, dict[str, Any]]]:
    directory = directory if directory is not None else default_dir()
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if (path / RESULTS_FILE).is_file():
            found.append((path, read_meta(path) or {"name": path.name}))
    return found


def resolve(arg: str, directory: Path | None = None) -> Path:
    """A run directory as given, else the saved baseline of that name."""
    path = Path(arg)
    if path.is_dir():
        return path
    directory = directory if directory is not None else default_dir()
    if re.match(NAME_PATTERN, arg) and (directory / arg).is_dir():
        return directory / arg
    saved = ", ".join(p.name for p, _ in list_saved(directory)) or "none"
    raise BenchInputError(arg, f"no such run directory, nor a saved baseline in {directory} (saved: {saved})")
