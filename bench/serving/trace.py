"""Request lengths from a trace file: a CSV with a header row, or JSONL with one object a line, e.g. the Azure
LLM inference traces (columns TIMESTAMP, ContextTokens, GeneratedTokens). Read strictly when the scenario is
loaded (a bad file, line or value is a BenchInputError naming file, line and column: exit 2); the lengths of
warmup_requests + requests are drawn then, with the scenario's seed, and travel in the run spec."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchInputError
from bench.serving.lengths import LengthSpec

TRACE_ROWS_STREAM = 4  # seed-sequence key of the row draws (bench.serving.run: arrivals 0, lengths 1-3)
SUFFIXES = (".csv", ".jsonl")


def read_column(path: Path, column: str) -> tuple[list[tuple[int, int]], str]:
    """(line, value) of every data row's `column` (an integer ≥ 0 on each row, else a BenchInputError naming
    the file, the line and the column), and the file's SHA-256."""
    src = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BenchInputError(src, f"cannot read the trace file: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BenchInputError(src, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    rows = _csv(src, text, column) if path.suffix.lower() == ".csv" else _jsonl(src, text, column)
    if not rows:
        raise BenchInputError(src, "holds no data rows")
    return rows, hashlib.sha256(data).hexdigest()


def _csv(src: str, text: str, column: str) -> list[tuple[int, int]]:
    reader = csv.reader(text.splitlines(keepends=True), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise BenchInputError(src, "is empty (a CSV trace needs a header row)")
        names = [h.strip() for h in header]
        if column not in names:
            raise BenchInputError(src, f"no column {column!r} (columns: {', '.join(names)})", "line 1")
        at = names.index(column)
        rows = []
        for row in reader:
            line = reader.line_num
            if not row:
                raise BenchInputError(src, "empty line", f"line {line}")
            if len(row) != len(names):
                raise BenchInputError(src, f"{len(row)} fields, the header has {len(names)}", f"line {line}")
            rows.append((line, _length(src, line, column, row[at].strip())))
    except csv.Error as exc:
        raise BenchInputError(src, f"malformed CSV: {exc}", f"line {reader.line_num}") from None
    return rows


def _jsonl(src: str, text: str, column: str) -> list[tuple[int, int]]:
    rows = []
    for line, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            raise BenchInputError(src, "empty line", f"line {line}")
        try:
            obj = json.loads(raw)
        except ValueError as exc:
            raise BenchInputError(src, f"not JSON: {exc}", f"line {line}") from None
        if not isinstance(obj, dict):
            raise BenchInputError(
                src, f"a JSONL trace holds one object a line, not {type(obj).__name__}", f"line {line}"
            )
        if column not in obj:
            raise BenchInputError(src, f"no key {column!r} (keys: {', '.join(map(str, obj))})", f"line {line}")
        rows.append((line, _length(src, line, column, obj[column])))
    return rows


def _length(src: str, line: int, column: str, value: Any) -> int:
    """An integer ≥ 0: a CSV cell of digits, or a JSON integer (not a float, a bool or a string)."""
    where = f"line {line}, {column}"
    if isinstance(value, str):
        if not value.isascii() or not value.isdigit():
            raise BenchInputError(src, f"{value!r} is not a token count (an integer ≥ 0)", where)
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BenchInputError(src, f"{json.dumps(value)} is not a token count (an integer ≥ 0)", where)
    return value


def draw(spec: LengthSpec, base_dir: Path, n: int, seed: int, scenario: str, field: str) -> LengthSpec:
    """The trace spec with its `lengths` for n requests: rows drawn with replacement by the seed (`sample`;
    every spec naming the same file draws the same rows, so a request keeps a trace row's prompt and output
    lengths together) or the first n rows in file order (`replay`); clipped to min / max where given."""
    if (spec.lengths, spec.sha256, spec.rows) != (None, None, None):
        raise BenchInputError(scenario, "lengths, sha256 and rows are filled from the trace file", field)
    path = Path(spec.file)
    path = path if path.is_absolute() else base_dir / path
    if path.suffix.lower() not in SUFFIXES:
        raise BenchInputError(
            scenario, f"a trace file is CSV or JSONL ({', '.join(SUFFIXES)}): {spec.file}", f"{field}.file"
        )
    if not path.is_file():
        raise BenchInputError(scenario, f"no such trace file: {path}", f"{field}.file")
    found, digest = read_column(path, spec.column)
    order = spec.order or "sample"
    if order == "replay":
        if len(found) < n:
            raise BenchInputError(
                scenario,
                f"order: replay needs {n} rows (warmup_requests + requests), {path} has {len(found)}",
                f"{field}.order",
            )
        picked = found[:n]
    else:
        rows = np.random.default_rng([seed, TRACE_ROWS_STREAM]).integers(0, len(found), n)
        picked = [found[i] for i in rows]
    lengths = []
    for line, value in picked:
        clipped = value if spec.min is None else max(value, spec.min)
        clipped = clipped if spec.max is None else min(clipped, spec.max)
        if clipped < 1:
            raise BenchInputError(str(path), f"length {value}: give `min: 1` to clip it", f"line {line}, {spec.column}")
        lengths.append(clipped)
    return spec.model_copy(update={"order": order, "lengths": lengths, "sha256": digest, "rows": len(found)})


def draw_all(serving: Any, base_dir: Path, seed: int, scenario: str) -> Any:
    """The serving spec with every trace length drawn (prompt_tokens, new_tokens)."""
    n = serving.warmup_requests + serving.requests
    update = {
        name: draw(spec, base_dir, n, seed, scenario, f"serving.{name}")
        for name in ("prompt_tokens", "new_tokens")
        if (spec := getattr(serving, name)).distribution == "trace"
    }
    return serving.model_copy(update=update) if update else serving
