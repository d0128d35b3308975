"""plan → spawn → collect.

Every (matrix point, repeat) runs in a fresh Python process (`python -m bench.worker`), its own
process group, with a wall-clock limit. The parent never touches the GPU: it checks the capability
table, starts the worker, and appends the worker's record (or a failed/timeout record it writes
itself) to results.jsonl as soon as the run ends.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench import environment
from bench.errors import BenchInputError
from bench.models import downloads_allowed
from bench.results import (ENVIRONMENT_FILE, RESULTS_FILE, Record, append_record, now_iso, read_records,
                           write_json)
from bench.scenario import LoadedScenario, RunSpec
from bench.worker import base_record
from bench.backends import BACKENDS

@dataclass
class SweepResult:
    out_dir: Path
    records: list[Record] = field(default_factory=list)  # this invocation's records
    skipped: int = 0  # already recorded (resume)

    @property
    def exit_code(self) -> int:
        from bench.serving.summary import exit_code as slo_exit_code

        return 1 if any(r.status in ("failed", "timeout") for r in self.records) else slo_exit_code(self.records)


def check_device(requested: str, source: str) -> str:
    """Resolve `auto` to cpu or cuda:0, and refuse a CUDA device this machine does not have (never run
    it on the CPU instead). The parent only counts devices: it never creates a CUDA context."""
    import torch

    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BenchInputError(source, f"{requested} requested but torch sees no CUDA device "
                                  f"(torch {torch.__version__}, CUDA build: {torch.version.cuda})", "device")
        index = int(requested.split(":")[1]) if ":" in requested else 0
        if index >= torch.cuda.device_count():
            raise BenchInputError(source, f"{requested} requested but only {torch.cuda.device_count()} "
                                  "CUDA device(s) exist", "device")
        return f"cuda:{index}"  # one spelling, so records and resume keys match
    return requested


def plan(scenarios: list[LoadedScenario], repeats: int, device: str | None) -> list[RunSpec]:
    specs = []
    for ls in scenarios:
        requested = device or ls.scenario.device
        resolved = check_device(requested, "--device" if device else ls.path)
        specs.extend(ls.run_specs(repeats=repeats, device=resolved))
    return specs


def _tail(path: Path, n: int = 1) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])[:500]


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


def make_reference(run: RunSpec, references: Path, logs: Path,
                   env: dict[str, str] | None = None) -> tuple[str | None, str | None]:
    """(path, error): the fp32 eager reference outputs for `run`'s model and inputs, computed in a process
    of its own the first time a sweep needs them and reused by every later run (resume included)."""
    ref = run.reference_spec()
    path = references / f"{run.reference_key}.pt"
    if path.exists():
        return str(path), None
    references.mkdir(parents=True, exist_ok=True)
    spec_path = references / f"{run.reference_key}.spec.json"
    log_path = logs / f"reference-{run.reference_key}.log"
    spec_path.write_text(ref.model_dump_json(indent=2))
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "bench.worker", "--reference", str(spec_path), str(path)],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env or worker_env())
        try:
            rc = proc.wait(timeout=run.measure.timeout_s)
        except subprocess.TimeoutExpired:
            _kill(proc)
            return None, f"the fp32 eager reference exceeded timeout_s={run.measure.timeout_s:g} (log: {log_path})"
        except BaseException:
            _kill(proc)
            raise
    if rc != 0 or not path.exists():
        return None, f"the fp32 eager reference failed: {_tail(log_path)} (log: {log_path})"
    return str(path), None


def attach_reference(spec: RunSpec, references: Path, logs: Path, env: dict[str, str] | None,
                     failed: dict[str, str], progress: Progress, bar) -> None:
    """Give `spec` its fp32 eager reference (made once per reference key; a key that failed once is not tried
    again: `failed` holds its error). Points the backend cannot run get none."""
    if BACKENDS[spec.backend].unsupported_reason(spec.task, spec.precision, spec.device.split(":")[0]) is not None:
        return
    if spec.serving is not None:  # serving levels are not compared with a reference
        return
    if spec.reference_key in failed:
        spec.reference_error = failed[spec.reference_key]
        return
    progress.update(bar, description=f"fp32 eager reference for {spec.model}")
    spec.reference_path, spec.reference_error = make_reference(spec, references, logs, env)
    if spec.reference_error:
        failed[spec.reference_key] = spec.reference_error
        progress.console.print(f"[yellow]fidelity[/]: {spec.reference_error}")


def run_one(run: RunSpec, logs: Path, env: dict[str, str] | None = None) -> Record:
    """Run one spec in its own process (environment `env`, default worker_env()); always returns a record."""

    device_type = run.device.split(":")[0]
    reason = BACKENDS[run.backend].unsupported_reason(run.task, run.precision, device_type)
    if reason:
        return Record(**base_record(run, run.device), status="unsupported", error=reason, started_at=now_iso(),
                      duration_s=0.0)

    spec_path = logs / f"{run.run_id}.spec.json"
    result_path = logs / f"{run.run_id}.result.json"
    log_path = logs / f"{run.run_id}.log"
    result_path.unlink(missing_ok=True)
    spec_path.write_text(run.model_dump_json(indent=2))
    env = env or worker_env()
    started, t0 = now_iso(), time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "bench.worker", str(spec_path), str(result_path)],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        try:
            rc = proc.wait(timeout=run.measure.timeout_s)
        except subprocess.TimeoutExpired:
            _kill(proc)
            return Record(**base_record(run, run.device), status="timeout",
                          error=f"run exceeded timeout_s={run.measure.timeout_s:g} and was killed",
                          started_at=started, duration_s=time.perf_counter() - t0)
        except BaseException:  # Ctrl-C or the runner being stopped: take the worker down with us
            _kill(proc)
            raise
    if result_path.exists():
        data = json.loads(result_path.read_text())
        records = [Record.model_validate(d) for d in (data if isinstance(data, list) else [data])]
        for record in records:
            if record.status == "failed":
                record.error = f"{record.error} (log: {log_path})"
        return records if isinstance(data, list) else records[0]  # a list: a serving point's levels
    how = f"signal {-rc}" if rc < 0 else f"exit code {rc}"
    return Record(**base_record(run, run.device), status="failed",
                  error=f"worker died with {how} without a result: {_tail(log_path)} (log: {log_path})",
                  started_at=started, duration_s=time.perf_counter() - t0)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_sweep(scenarios: list[LoadedScenario], out_dir: Path, repeats: int = 1, device: str | None = None,
              resume: bool = False, console: Console | None = None, fidelity: bool = True) -> SweepResult:
    console = console or Console(stderr=True)
    specs = plan(scenarios, repeats, device)  # may raise BenchInputError: nothing written yet
    results_path = out_dir / RESULTS_FILE
    if results_path.exists() and results_path.stat().st_size > 0 and not resume:
        raise BenchInputError("--out", f"{out_dir} already holds {RESULTS_FILE}; pass --resume to continue "
                              "that sweep or choose another directory")
    # A serving point's level records have run_id "<point's run_id>@<level>"; all are written together.
    done = {r.run_id.partition("@")[0] for r in read_records(results_path)} if resume else set()
    logs = out_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / ENVIRONMENT_FILE, environment.collect())

    result = SweepResult(out_dir=out_dir)
    todo = [s for s in specs if s.run_id not in done]
    result.skipped = len(specs) - len(todo)
    if result.skipped:
        console.print(f"resume: {result.skipped} run(s) already recorded in {results_path}, {len(todo)} to go")
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("sweep", total=len(todo))
        reference_errors: dict[str, str] = {}  # a reference that failed once is not tried again
        for spec in todo:
            progress.update(bar, description=spec.label())
            if fidelity:
                attach_reference(spec, out_dir / "references", logs, None, reference_errors, progress, bar)
                progress.update(bar, description=spec.label())
            got = run_one(spec, logs)
            for record in got if isinstance(got, list) else [got]:
                append_record(results_path, record)
                result.records.append(record)
                if record.status != "ok":
                    progress.console.print(f"[yellow]{record.status}[/]: {spec.label()}: {record.error}")
            progress.advance(bar)
        progress.update(bar, description="sweep done")
    return result


# --- interleaved A/B --------------------------------------------------------------------------------------

@dataclass
class Arm:
    """One side of an interleaved comparison: a name (its run directory under the sweep's), the environment
    variables its workers get on top of the runner's, and optionally the directory they import `bench` from."""

    name: str
    env: dict[str, str] = field(default_factory=dict)
    code: Path | None = None

    def worker_env(self) -> dict[str, str]:
        return worker_env(self.env, self.code)


def check_arm_code(arm: Arm) -> None:
    """Refuse a code directory that is not a `bench` source tree, or that the workers would not import."""
    if arm.code is None:
        return
    source = f"--{arm.name}-code"
    if not (arm.code / "bench" / "worker.py").is_file():
        raise BenchInputError(source, f"{arm.code} has no bench/worker.py (give the root of an aigc-bench checkout)")
    probe = subprocess.run([sys.executable, "-c", "import bench, sys; sys.stdout.write(bench.__file__)"],
                           capture_output=True, text=True, env=arm.worker_env(), timeout=60)
    imported = Path(probe.stdout.strip() or ".").resolve()
    if probe.returncode != 0 or not imported.is_relative_to(arm.code.resolve()):
        raise BenchInputError(source, f"workers would import bench from {probe.stdout.strip() or probe.stderr.strip()!r}, "
                              f"not from {arm.code}")


def run_interleaved(scenarios: list[LoadedScenario], out_dir: Path, arms: list[Arm], repeats: int,
                    device: str | None = None, console: Console | None = None, fidelity: bool = True,
                    seed: int = 0) -> dict[str, SweepResult]:
    """Measure every point `repeats` times per arm, alternating arms repeat by repeat (in a seeded random order
    within each round), so that whatever slows this machine for seconds to minutes — other tenants of the
    host, clocks, heat — falls on every arm alike. Arm A's run directory is OUT/A, a normal run directory;
    each record of round k carries `pair` = "<session>:<point>:<k>", which `bench compare` uses to compare
    the arms round by round (a paired bootstrap) instead of as two independent samples.

    Fidelity compares every arm with one fp32 eager reference (OUT/references), made with the first arm's
    environment and code: a change that alters the outputs shows as lost fidelity in the other arm."""
    import random
    import uuid

    console = console or Console(stderr=True)
    names = [a.name for a in arms]
    if len(set(names)) != len(names) or len(arms) < 2:
        raise BenchInputError("arms", f"need two or more differently named arms, got {names}")
    specs = plan(scenarios, repeats, device)
    out_dir = out_dir.resolve()  # workers of a code arm run elsewhere on sys.path, not in another directory
    for arm in arms:
        check_arm_code(arm)
        results = out_dir / arm.name / RESULTS_FILE
        if results.exists() and results.stat().st_size > 0:
            raise BenchInputError("--out", f"{results} exists; choose another directory (an interleaved sweep "
                                  "is not resumed: its rounds would no longer be adjacent in time)")
    session = uuid.uuid4().hex[:12]
    envs = {a.name: a.worker_env() for a in arms}
    for arm in arms:
        (out_dir / arm.name / "logs").mkdir(parents=True, exist_ok=True)
        write_json(out_dir / arm.name / ENVIRONMENT_FILE, environment.collect(envs[arm.name], arm.code))
    rng = random.Random(seed)
    results = {a.name: SweepResult(out_dir=out_dir / a.name) for a in arms}
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("interleaved", total=len(specs) * len(arms))
        reference_errors: dict[str, str] = {}
        for spec in specs:
            if fidelity:
                attach_reference(spec, out_dir / "references", out_dir / arms[0].name / "logs", envs[arms[0].name],
                                 reference_errors, progress, bar)
            order = list(arms)
            rng.shuffle(order)
            for arm in order:
                progress.update(bar, description=f"{arm.name}: {spec.label()}")
                got = run_one(spec, out_dir / arm.name / "logs", envs[arm.name])
                for record in got if isinstance(got, list) else [got]:  # a serving point: one per level
                    record.pair = f"{session}:{record.point_id}:{spec.repeat}"
                    append_record(out_dir / arm.name / RESULTS_FILE, record)
                    results[arm.name].records.append(record)
                    if record.status != "ok":
                        progress.console.print(f"[yellow]{record.status}[/]: {arm.name}: {spec.label()}: "
                                               f"{record.error}")
                progress.advance(bar)
        progress.update(bar, description="interleaved sweep done")
    return results
