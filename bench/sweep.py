"""A sweep: plan (scenarios → RunSpecs), the run directory (lock, environment, resume, retry), references, and
records appended as each run ends. Where a run executes is the executor's business (bench.executors).

The parent never touches the GPU: it checks the capability table, hands each RunSpec to the executor and appends
the records that come back, each once, to results.jsonl (bench.store).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench import environment, store
from bench.backends import BACKENDS
from bench.errors import BenchInputError
from bench.executors import Executor, Job, run_all
from bench.executors import executor as make_executor
from bench.models import downloads_allowed
from bench.records import failed_record
from bench.results import ENVIRONMENT_FILE, RESULTS_FILE, Record
from bench.scenario import LoadedScenario, RunSpec

RETRIED = ("failed", "timeout")


@dataclass
class SweepResult:
    out_dir: Path
    records: list[Record] = field(default_factory=list)  # this invocation's records
    skipped: int = 0  # already recorded (resume)

    @property
    def exit_code(self) -> int:
        from bench.serving.summary import exit_code as slo_exit_code

        return 1 if any(r.status in RETRIED for r in self.records) else slo_exit_code(self.records)


def run_key(record: Record) -> str:
    """The run id of the RunSpec a record came from: a serving point's level records are "<run_id>@<level>",
    all written together by one worker."""
    return record.run_id.partition("@")[0]


def check_device(requested: str, source: str) -> str:
    """Resolve `auto` to cpu or cuda:0, and refuse a CUDA device this machine does not have (never run
    it on the CPU instead). The parent only counts devices: it never creates a CUDA context."""
    import torch

    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BenchInputError(
                source,
                f"{requested} requested but torch sees no CUDA device "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda})",
                "device",
            )
        index = int(requested.split(":")[1]) if ":" in requested else 0
        if index >= torch.cuda.device_count():
            raise BenchInputError(
                source, f"{requested} requested but only {torch.cuda.device_count()} CUDA device(s) exist", "device"
            )
        return f"cuda:{index}"  # one spelling, so records and resume keys match
    return requested


def plan(scenarios: list[LoadedScenario], repeats: int, device: str | None, check=check_device) -> list[RunSpec]:
    specs = []
    for ls in scenarios:
        requested = device or ls.scenario.device
        resolved = check(requested, "--device" if device else ls.path)
        specs.extend(ls.run_specs(repeats=repeats, device=resolved))
    return specs


def worker_env(extra: dict[str, str] | None = None, code: Path | None = None) -> dict[str, str]:
    """The workers' environment: this process's, offline by default, plus an arm's `extra` variables; with
    `code`, `bench` is imported from that directory (PYTHONPATH) instead of this checkout."""
    env = dict(os.environ, **(extra or {}))
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(code.resolve()), *filter(None, [env.get("PYTHONPATH")])])
        env["PYTHONSAFEPATH"] = "1"  # `python -m` would put the working directory (this checkout) first
    if not downloads_allowed():
        env.setdefault("HF_HUB_OFFLINE", "1")  # offline by default
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONUNBUFFERED"] = "1"
    env["BENCH_RUNNER_PID"] = str(os.getpid())
    return env


def unsupported(spec: RunSpec) -> str | None:
    return BACKENDS[spec.backend].unsupported_reason(
        spec.task, spec.precision, spec.device.split(":")[0], spec.backend_options
    )


class References:
    """The fp32 eager reference outputs of a sweep (DIR/references/KEY.pt): made once per reference key in a
    worker of its own, reused by every later run (resume included); a key that failed is not tried again."""

    def __init__(self, directory: Path, executor: Executor):
        self.directory, self.executor = directory, executor
        self.failed: dict[str, str] = {}

    def attach(
        self, spec: RunSpec, logs: Path, env: dict[str, str], progress: Progress | None = None, bar=None
    ) -> None:
        if unsupported(spec) is not None or spec.serving is not None:  # serving levels have no reference
            return
        key = spec.reference_key
        if key in self.failed:
            spec.reference_error = self.failed[key]
            return
        path = self.directory / f"{key}.pt"
        if not path.exists():
            if progress is not None:
                progress.update(bar, description=f"fp32 eager reference for {spec.model}")
            self.directory.mkdir(parents=True, exist_ok=True)
            error = self.executor.reference(Job(spec.reference_spec(), logs, env), path)
            if error:
                self.failed[key] = spec.reference_error = error
                if progress is not None:
                    progress.console.print(f"[yellow]fidelity[/]: {error}")
                return
        spec.reference_path = str(path)


def execute(spec: RunSpec, executor: Executor, logs: Path, env: dict[str, str]) -> list[Record]:
    """The records of one run: an unsupported point is recorded as such without starting a worker."""
    reason = unsupported(spec)
    if reason:
        return [failed_record(spec, "unsupported", reason)]
    return executor.run(Job(spec, logs, env))


def progress_bar(console: Console) -> Progress:
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=console, transient=False)


def _describe(settings: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(settings.items())) or "none recorded"


def check_settings(specs: list[RunSpec], recorded: list[Record], results_path: Path) -> None:
    """Refuse to resume a directory whose records of these points were measured with other settings."""
    by_repeat = {(s.point_id, s.repeat): s for s in specs}
    for record in recorded:
        spec = by_repeat.get((record.point_id.partition("@")[0], record.repeat))
        if spec is None or spec.run_id == run_key(record):
            continue
        now, then = spec.measured_settings(), record.measure
        diff = [k for k in sorted(set(now) | set(then)) if now.get(k) != then.get(k)]
        if not then:
            what = "its record names no measure settings: an older aigc-bench wrote it"
        else:
            what = (
                ", ".join(f"measure.{k}: recorded {then.get(k)!r}, scenario {now.get(k)!r}" for k in diff)
                or "the run id differs: another version of aigc-bench wrote it"
            )
        raise BenchInputError(
            str(results_path),
            f"--resume: {spec.label()} was recorded with other settings "
            f"({what}); resume with the settings it was measured with, or use another --out",
        )


def prepare_resume(specs: list[RunSpec], results_path: Path, retry_failed: bool, console: Console) -> set[str]:
    """The run ids already recorded; a truncated tail and (retry_failed) failed/timed-out records of planned
    runs are moved to side files first, and said so."""
    side, moved = store.move_tail_aside(results_path)
    if side:
        console.print(
            f"resume: the last line of {results_path} was cut short; moved {moved} line(s) to {side}; "
            "that run is measured again",
            soft_wrap=True,
            markup=False,
            highlight=False,
        )
    found = store.scan(results_path)
    if found.malformed:
        raise store.MalformedRecords(results_path, *found.malformed[0])
    check_settings(specs, found.records, results_path)
    if retry_failed:
        planned = {s.run_id for s in specs}
        again = {run_key(r) for r in found.records if r.status in RETRIED and run_key(r) in planned}
        if again:  # every record of such a run moves aside (a serving point re-runs all its levels)
            side, moved = store.move_aside(
                results_path, {r.run_id for r in found.records if run_key(r) in again}, "retried"
            )
            console.print(
                f"retry: moved {moved} failed/timed-out record(s) to {side}; running them again",
                soft_wrap=True,
                markup=False,
                highlight=False,
            )
        found = store.scan(results_path)
    return {run_key(r) for r in found.records}


def run_sweep(
    scenarios: list[LoadedScenario],
    out_dir: Path,
    repeats: int = 1,
    device: str | None = None,
    resume: bool = False,
    console: Console | None = None,
    fidelity: bool = True,
    retry_failed: bool = False,
    executor: Executor | None = None,
) -> SweepResult:
    """Run every planned point not yet recorded in OUT (all of them unless resume); one sweep per OUT at a time."""
    console = console or Console(stderr=True)
    executor = executor or make_executor()
    check = getattr(executor, "check_device", check_device)  # where the runs go decides which devices exist
    specs = plan(scenarios, repeats, device, check)  # may raise BenchInputError: nothing written yet
    resume = resume or retry_failed
    results_path = out_dir / RESULTS_FILE
    with store.sweep_lock(out_dir):
        if results_path.exists() and results_path.stat().st_size > 0 and not resume:
            raise BenchInputError(
                "--out",
                f"{out_dir} already holds {RESULTS_FILE}; pass --resume to continue "
                "that sweep or choose another directory",
            )
        done = prepare_resume(specs, results_path, retry_failed, console) if resume else set()
        logs = out_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        store.write_json(out_dir / ENVIRONMENT_FILE, environment.collect())

        result = SweepResult(out_dir=out_dir)
        todo = [s for s in specs if s.run_id not in done]
        result.skipped = len(specs) - len(todo)
        if result.skipped:
            console.print(
                f"resume: {result.skipped} run(s) already recorded in {results_path}, {len(todo)} to go",
                soft_wrap=True,
                markup=False,
                highlight=False,
            )
        env = worker_env()
        references = References(out_dir / "references", executor)
        with progress_bar(console) as progress:
            bar = progress.add_task("sweep", total=len(todo))

            def record(spec: RunSpec, records: list[Record]) -> None:
                store.append_records(results_path, records)
                result.records.extend(records)
                for r in records:
                    if r.status != "ok":
                        progress.console.print(f"[yellow]{r.status}[/]: {spec.label()}: {r.error}")
                progress.advance(bar)

            def jobs():  # lazily: an executor running jobs at once (Ray) submits each as it is made
                for spec in todo:
                    if fidelity:
                        references.attach(spec, logs, env, progress, bar)
                    progress.update(bar, description=spec.label())
                    reason = unsupported(spec)
                    if reason:
                        record(spec, [failed_record(spec, "unsupported", reason)])
                    else:
                        yield Job(spec, logs, env)

            for job, records in run_all(executor, jobs()):
                record(job.spec, records)
            progress.update(bar, description="sweep done")
    return result
