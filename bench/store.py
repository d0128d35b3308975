"""The JSONL record store of a run directory and its lock.

- `append_records` writes a run's records as complete lines in one write, then fsyncs; a write that fails
  part-way (a full disk, a file size limit) is cut back to the file's previous length and raises
  `RecordWriteError`, so the file never holds half a line written by this process.
- `read_records` refuses a malformed line (`MalformedRecords`, naming file and line): readers never drop one.
- `scan` / `move_tail_aside` / `move_aside` are what `--resume` and `--retry-failed` use; what they take out of
  results.jsonl is kept in a side file next to it, never deleted.
- `sweep_lock` holds an flock on DIR/.lock for a sweep: a second sweep into DIR is refused with the holder's pid;
  the kernel drops the lock with its holder, so a killed sweep leaves nothing that blocks `--resume`.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from bench.errors import BenchInputError

if TYPE_CHECKING:
    from bench.results import Record

LOCK_FILE = ".lock"


class MalformedRecords(BenchInputError):
    """A results file holds a line that is not a record (cut short, or not valid against the schema)."""

    def __init__(self, path: Path, line: int, problem: str):
        self.path, self.line = Path(path), line
        super().__init__(
            str(path),
            f"line {line} is not a valid record ({problem}); "
            "`bench run --resume --out DIR` moves a truncated last line aside",
            None,
        )


class RecordWriteError(Exception):
    """A record could not be written (disk full, file too large, I/O error); the file was left as it was."""


@dataclass
class Scan:
    records: list[Record] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # line number of each record
    malformed: list[tuple[int, str]] = field(default_factory=list)  # (line, problem) of complete lines
    tail: bytes = b""  # a last line without its newline: cut short while being written


def _parse(line: bytes) -> Record:
    from bench.results import Record

    return Record.model_validate_json(line)


def _problem(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__


def scan(path: Path) -> Scan:
    """Every line of `path`, sorted into records, malformed complete lines and an unterminated tail."""
    out = Scan()
    if not path.exists():
        return out
    data = path.read_bytes()
    body, sep, tail = data.rpartition(b"\n")
    if not sep:
        body, tail = b"", data
    out.tail = tail if tail.strip() else b""
    for number, line in enumerate(body.split(b"\n") if sep else [], start=1):
        if not line.strip():
            continue
        try:
            out.records.append(_parse(line))
            out.lines.append(number)
        except ValueError as exc:
            out.malformed.append((number, _problem(exc)))
    return out


def read_records(path: Path) -> list[Record]:
    """The records of a results file; raises MalformedRecords at the first line that is not one."""
    found = scan(path)
    if found.malformed:
        raise MalformedRecords(path, *found.malformed[0])
    if found.tail:
        lines = path.read_bytes().count(b"\n") + 1
        try:
            _parse(found.tail)
            problem = "no newline at its end: cut short while being written"
        except ValueError as exc:
            problem = f"cut short while being written: {_problem(exc)}"
        raise MalformedRecords(path, lines, problem)
    return found.records


def append_records(path: Path, records: Iterable[Record]) -> None:
    """Append `records` (one run's) as complete lines in one write and fsync them."""
    data = "".join(r.model_dump_json() + "\n" for r in records).encode("utf-8")
    if not data:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as exc:
            try:
                os.ftruncate(fd, start)  # never leave part of a line behind
                os.fsync(fd)
            except OSError:
                pass
            raise RecordWriteError(
                f"cannot write a record to {path}: {exc.strerror or exc}; the file was left "
                f"at its previous {start} bytes (complete records only)"
            ) from None
    finally:
        os.close(fd)


def append_record(path: Path, record: Record) -> None:
    append_records(path, [record])


def _side_file(path: Path, tag: str) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    side = path.with_name(f"{path.stem}.{tag}-{stamp}{path.suffix}")
    n = 1
    while side.exists():
        side = path.with_name(f"{path.stem}.{tag}-{stamp}-{n}{path.suffix}")
        n += 1
    return side


def _rewrite(path: Path, keep: list[bytes]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(b"".join(line + b"\n" for line in keep))
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _split(path: Path, moved: Callable[[int, bytes], bool], tag: str) -> tuple[Path | None, int]:
    """Move the lines for which moved(number, line) holds into a side file; (side file, lines moved)."""
    lines = path.read_bytes().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    keep, out = [], []
    for number, line in enumerate(lines, start=1):
        (out if moved(number, line) else keep).append(line)
    if not out:
        return None, 0
    side = _side_file(path, tag)
    with open(side, "wb") as f:
        f.write(b"\n".join(out) + b"\n")
        f.flush()
        os.fsync(f.fileno())
    _rewrite(path, [ln for ln in keep if ln.strip()])
    return side, len(out)


_RUN_ID = re.compile(rb'"run_id"\s*:\s*"([^"]+)"')


def move_tail_aside(path: Path) -> tuple[Path | None, int]:
    """A last line cut short (no newline) goes to a side file, with any complete line of the same run (a run's
    records are written together, so they stay or go together). Returns (side file, lines moved)."""
    found = scan(path)
    if not found.tail:
        return None, 0
    match = _RUN_ID.search(found.tail)
    run_id = match.group(1) if match else None
    total = path.read_bytes().count(b"\n") + 1

    def moved(number: int, line: bytes) -> bool:
        if number == total:
            return True
        m = _RUN_ID.search(line)
        return run_id is not None and m is not None and m.group(1) == run_id

    return _split(path, moved, "truncated")


def move_aside(path: Path, run_ids: set[str], tag: str) -> tuple[Path | None, int]:
    """Move every record whose run_id is in `run_ids` to a side file (--retry-failed)."""

    def moved(_number: int, line: bytes) -> bool:
        m = _RUN_ID.search(line)
        return m is not None and m.group(1).decode() in run_ids

    return _split(path, moved, tag)


@contextmanager
def sweep_lock(directory: Path, source: str = "--out") -> Iterator[None]:
    """Hold DIR/.lock for a sweep; a directory another live sweep holds is refused (BenchInputError)."""
    directory.mkdir(parents=True, exist_ok=True)
    lock_path = directory / LOCK_FILE
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise BenchInputError(
                source,
                f"{directory} is being written by another sweep (pid {holder}); "
                "wait for it or choose another directory",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def write_json(path: Path, data) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)
