"""Executors: where a RunSpec runs. The sweep hands an executor one `Job` at a time and appends what comes back.

    class Executor(Protocol):
        def run(self, job: Job) -> list[Record]            # always returns ≥ 1 record, never raises for a run
        def reference(self, job: Job, out: Path) -> str | None   # the fp32 eager reference; None or an error

A run that did not produce a record (crash, timeout, unreachable node) comes back as a record built by
`bench.records.failed_record`. An executor retries infrastructure faults only, never a measurement, and
never changes a RunSpec. Adding one (Ray tasks, a cluster) is one module here plus one line in EXECUTORS.
See docs/records.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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


def executor(name: str = "local", **options) -> Executor:
    from bench.executors.local import LocalExecutor

    executors = {"local": LocalExecutor}  # registry: one line per executor
    return executors[name](**options)
