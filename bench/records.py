"""Records of a run: the identity fields every record of a RunSpec carries, and the one factory for a record of
a run that produced none (unsupported, failed, timed out, out of memory)."""

from __future__ import annotations

import signal
from typing import Any

from bench.results import Record, now_iso
from bench.scenario import RunSpec

OOM_PATTERNS = ("out of memory", "can't allocate memory", "cannot allocate memory", "std::bad_alloc")


def run_fields(run: RunSpec, device: str) -> dict[str, Any]:
    """What identifies a record of `run`: its point, repeat and the settings it was measured with. The precision
    is what the backend says it ran (an endpoint: `server`, the server's own)."""
    from bench.backends import BACKENDS

    backend = BACKENDS.get(run.backend)
    precision = backend.recorded_precision(run.precision) if backend is not None else run.precision
    return dict(
        run_id=run.run_id,
        point_id=run.point_id,
        scenario=run.scenario,
        scenario_file=run.scenario_file,
        model=run.model,
        weights=run.weights,
        task=run.task,
        backend=run.backend,
        precision=precision,
        batch_size=run.batch_size,
        workload=run.workload,
        backend_options=run.backend_options,
        device=device,
        repeat=run.repeat,
        measure=run.measured_settings(),
    )


def failed_record(
    run: RunSpec,
    status: str,
    error: str,
    *,
    device: str | None = None,
    started_at: str | None = None,
    duration_s: float = 0.0,
) -> Record:
    """A record for a run that did not produce one: status unsupported | failed | timeout, with the reason."""
    return Record(
        **run_fields(run, device or run.device),
        status=status,
        error=error,
        started_at=started_at or now_iso(),
        duration_s=duration_s,
    )


def describe_exception(exc: BaseException) -> str:
    """One line for a run's error; an allocation failure (host or device) says "out of memory" first."""
    first_line = (str(exc).strip().splitlines() or [""])[0][:500]
    text = f"{type(exc).__name__}: {first_line}"
    if (
        isinstance(exc, MemoryError)
        or type(exc).__name__ == "OutOfMemoryError"
        or any(p in str(exc).lower() for p in OOM_PATTERNS)
    ):
        return f"out of memory: {text}"
    return text


def describe_exit(returncode: int) -> str:
    """How a worker process ended without a result: 'signal 9 (SIGKILL)' or 'exit code 3'."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown"
        hint = "; killed from outside — the kernel's out-of-memory killer does this" if -returncode == 9 else ""
        return f"signal {-returncode} ({name}{hint})"
    return f"exit code {returncode}"
