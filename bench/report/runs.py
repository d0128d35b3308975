"""Run directories as a report sees them: a label, the records (through the schema) and the environment."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import BenchInputError
from bench.results import ENVIRONMENT_FILE as ENVIRONMENT
from bench.results import RESULTS_FILE as RESULTS
from bench.results import Record, read_records


@dataclass
class Run:
    label: str  # the run directory's folder name: what tables and charts call it
    path: Path
    records: list[Record]
    environment: dict[str, Any] | None  # None when the directory has no environment.json


def load_runs(paths: list[Path]) -> list[Run]:
    """Every run directory, in the order given (the first one is what the others are compared with)."""
    if not paths:
        raise BenchInputError("RUN_DIR", "name at least one run directory")
    runs = [_load_run(Path(p)) for p in paths]
    labels = _labels([r.path for r in runs])
    for run, label in zip(runs, labels):
        run.label = label
    return runs


def _load_run(path: Path) -> Run:
    if not path.is_dir():
        raise BenchInputError(str(path), "no such run directory")
    results = path / RESULTS
    if not results.is_file():
        raise BenchInputError(str(path), f"holds no {RESULTS} (is it a directory written by `bench run`?)")
    records = read_records(results)
    if not records:
        raise BenchInputError(str(results), "holds no readable records")
    return Run(label=path.name, path=path, records=records, environment=_read_environment(path / ENVIRONMENT))


def _read_environment(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None  # the report says so in its environment section; the records alone still make a report
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise BenchInputError(str(path), f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BenchInputError(str(path), "must hold a JSON object")
    return data


def _labels(paths: list[Path]) -> list[str]:
    """Folder names (a `reports/latest` link is named by the folder it points at); where two run
    directories share a name, the path as given."""
    names = [p.resolve().name or str(p) for p in paths]
    labels = [name if names.count(name) == 1 else str(path) for name, path in zip(names, paths)]
    if len(set(labels)) != len(labels):
        dup = next(label for label in labels if labels.count(label) > 1)
        raise BenchInputError(dup, "the same run directory is named twice")
    return labels
