"""Executors: where a RunSpec runs. The sweep hands an executor one `Job` at a time and appends what comes back.

    class Executor(Protocol):
        def run(self, job: Job) -> list[Record]            # always returns ≥ 1 record, never raises for a run
        def reference(self, job: Job, out: Path) -> str | None   # the fp32 eager reference; None or an error

Optional: `run_all(jobs)` yields (job, records) as each ends, for an executor that runs jobs at once (Ray; the
sweep hands it a lazy iterable); `check_device(requested, source)` resolves devices where the runs go.

A run that did not produce a record (crash, timeout, unreachable node) comes back as a record built by
`bench.records.failed_record`. An executor retries infrastructure faults only, never a measurement, and
never changes a RunSpec. Adding one (Ray tasks, a cluster) is one module here plus one line in EXECUTORS.
See docs/records.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from bench.results import Record
    from bench.scenario import RunSpec


@dataclass
class Job:
    """One RunSpec to run: where its log and hand-off files go and the worker's environment."""

    spec: RunSpec
    logs: Path  # the run directory's logs/ (spec, log and result files are named by run_id)
    env: dict[str, str] = field(default_factory=dict)  # complete environment of the worker process


class Executor(Protocol):
    def run(self, job: Job) -> list[Record]:
        """Run the job's worker; its records (a serving sweep gives one per load level), or one failed record."""
        ...

    def reference(self, job: Job, out: Path) -> str | None:
        """Write the fp32 eager reference outputs of `job.spec` (already the reference spec) to `out`;
        None on success, else why not."""
        ...


EXECUTORS = {  # registry: one line per executor, "module:class" (imported when chosen: Ray is an optional extra)
    "local": "bench.executors.local:LocalExecutor",
    "ray": "bench.executors.ray:RayExecutor",
}


def executor(name: str = "local", **options) -> Executor:
    from bench.errors import BenchInputError

    if name not in EXECUTORS:
        raise BenchInputError("--executor", f"unknown executor {name!r} (known: {', '.join(EXECUTORS)})")
    module, cls = EXECUTORS[name].split(":")
    try:
        loaded = import_module(module)
    except ImportError as exc:
        raise BenchInputError("--executor", f"{name} needs {exc.name}: pip install -e '.[{name}]'") from None
    return getattr(loaded, cls)(**options)


def run_all(executor: Executor, jobs: Iterable[Job]) -> Iterator[tuple[Job, list[Record]]]:
    """Each job with its records as it ends: an executor with `run_all` runs them concurrently (Ray), any other
    one by one through `run`."""
    many = getattr(executor, "run_all", None)
    if many is not None:
        yield from many(jobs)
        return
    for job in jobs:
        yield job, executor.run(job)
