"""Local executor: each job is `python -m bench.worker` in its own process group on this machine, with a
wall-clock limit (timeout_s: the group is killed) and optionally an address-space limit (RLIMIT_AS).

Hand-off: the worker writes RESULT_JSON, a list of records (or one record, from older checkouts that an A/B
arm may import); no file means the worker died, and the record says how, with the log's last line.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.executors import Job
from bench.records import describe_exit, failed_record
from bench.results import Record, now_iso


def tail(path: Path, n: int = 1) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])[:500]


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def spawn(
    argv: list[str], log_path: Path, env: dict[str, str], timeout_s: float, memory_limit_bytes: int | None = None
) -> int | None:
    """Run `python -m bench.worker ARGV` in a new process group, output to `log_path`; its return code, or None
    when it ran past timeout_s and was killed. Ctrl-C or the runner being stopped takes the worker down too."""

    def limit() -> None:
        if memory_limit_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))

    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.worker", *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            preexec_fn=limit if memory_limit_bytes else None,
        )
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            return None
        except BaseException:
            kill_group(proc)
            raise


def read_handoff(path: Path) -> list[Record]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return [Record.model_validate(d) for d in (data if isinstance(data, list) else [data])]


class LocalExecutor:
    def __init__(self, memory_limit_bytes: int | None = None):
        self.memory_limit_bytes = memory_limit_bytes

    def run(self, job: Job) -> list[Record]:
        run = job.spec
        spec_path = job.logs / f"{run.run_id}.spec.json"
        result_path = job.logs / f"{run.run_id}.result.json"
        log_path = job.logs / f"{run.run_id}.log"
        result_path.unlink(missing_ok=True)
        spec_path.write_text(run.model_dump_json(indent=2))
        started, t0 = now_iso(), time.perf_counter()
        rc = spawn(
            [str(spec_path), str(result_path)], log_path, job.env, run.measure.timeout_s, self.memory_limit_bytes
        )
        if rc is None:
            return [
                failed_record(
                    run,
                    "timeout",
                    f"run exceeded timeout_s={run.measure.timeout_s:g} and was killed",
                    started_at=started,
                    duration_s=time.perf_counter() - t0,
                )
            ]
        if result_path.exists():
            try:
                records = read_handoff(result_path)
            except ValueError as exc:
                return [
                    failed_record(
                        run,
                        "failed",
                        f"worker wrote an unreadable result ({exc}) (log: {log_path})",
                        started_at=started,
                        duration_s=time.perf_counter() - t0,
                    )
                ]
            for record in records:
                if record.status == "failed":
                    record.error = f"{record.error} (log: {log_path})"
            return records
        return [
            failed_record(
                run,
                "failed",
                f"worker died with {describe_exit(rc)} without a result: {tail(log_path)} (log: {log_path})",
                started_at=started,
                duration_s=time.perf_counter() - t0,
            )
        ]

    def reference(self, job: Job, out: Path) -> str | None:
        run = job.spec
        key = out.stem
        spec_path = out.with_name(f"{key}.spec.json")
        log_path = job.logs / f"reference-{key}.log"
        spec_path.write_text(run.model_dump_json(indent=2))
        rc = spawn(
            ["--reference", str(spec_path), str(out)], log_path, job.env, run.measure.timeout_s, self.memory_limit_bytes
        )
        if rc is None:
            return f"the fp32 eager reference exceeded timeout_s={run.measure.timeout_s:g} (log: {log_path})"
        if rc != 0 or not out.exists():
            return f"the fp32 eager reference failed: {tail(log_path)} (log: {log_path})"
        return None
