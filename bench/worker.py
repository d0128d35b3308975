"""The child-process entry point: run one RunSpec, write one record.

    python -m bench.worker SPEC_JSON RESULT_JSON

Phases: load (load_s) → backend.prepare (its cold costs) → first call (first_call_s, cold) → `warmup` calls
→ measured calls until min_iterations AND min_time_s both hold.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from pathlib import Path

from bench.inject import maybe_slow_down
from bench.results import Record, now_iso
from bench.roofline import analysis as roofline
from bench.scenario import RunSpec


def resolve_device(requested: str):
    """auto -> cuda if available, else cpu. Availability was checked by the runner already."""
    import torch

    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from bench.environment import cpu_model

    return cpu_model()


def base_record(run: RunSpec, device: str) -> dict:
    from bench.records import run_fields

    return run_fields(run, device)


def quality(metrics, max_cv: float) -> tuple[list[str], list[str]]:
    """(invalid_reasons, warnings): too noisy to trust vs. worth knowing. Every workload measures `latency_s`
    (one call); the percentile warnings cover the distributions its gate compares."""
    invalid, warnings = [], []
    lat = metrics.latency_s
    if lat.count < 3:
        invalid.append(f"latency_s has {lat.count} samples; at least 3 are needed for a spread")
    elif lat.cv > max_cv:
        invalid.append(f"latency_s coefficient of variation {lat.cv:.1%} exceeds max_cv {max_cv:.0%}")
    for name, info in type(metrics).metric_infos.items():
        stats = getattr(metrics, name)
        if stats is None or not (info.distribution and info.gated):
            continue
        unresolved = stats.unresolved_percentiles()
        if unresolved:
            warnings.append(
                f"{name}: {stats.count} samples do not resolve {', '.join(unresolved)} "
                f"(p99 needs 100, p95 20, p90 10); those equal or approach the max"
            )
    return invalid, warnings


def measure(run: RunSpec) -> Record:
    import torch

    from bench import models
    from bench.backends import BACKENDS
    from bench.measure.memory import MemoryTracker, host_rss_peak_bytes
    from bench.measure.telemetry import TelemetryTracker, energy_units
    from bench.measure.timing import make_clock
    from bench.workloads import WORKLOADS

    started, t_process = now_iso(), time.perf_counter()
    device = resolve_device(run.device)
    torch.manual_seed(run.measure.seed)
    backend = BACKENDS[run.backend](run.backend_options)
    workload_cls = WORKLOADS[run.task]

    ref = models.ModelRef(run.model, run.weights, run.model_kind, run.model_location)
    t0 = time.perf_counter()
    model = workload_cls.build(ref, backend.load_dtype(run.precision, device.type), device, seed=run.measure.seed)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    load_s = time.perf_counter() - t0

    prepared = backend.prepare(model, run, device)
    prepared = maybe_slow_down(prepared)  # test-only knob (bench/inject.py), no-op unless BENCH_INJECT_SLOWDOWN set
    clock = make_clock(device, prefer_sync=prepared.uses_foreign_streams)
    workload = workload_cls(run, device, clock)
    workload.prepare_inputs(prepared.runnable)

    first_call_s = workload.call(prepared.runnable)["latency_s"]
    for _ in range(run.measure.warmup):
        workload.call(prepared.runnable)
    cold_metrics = {**prepared.cold_metrics, **prepared.monitor.cold_metrics()}

    lifetime_peak = host_rss_peak_bytes()
    calls = []
    tracker = MemoryTracker(device)
    telemetry = TelemetryTracker.for_device(device, run.measure.telemetry, clock.synchronize)
    prepared.monitor.start_measured()
    with tracker, telemetry:
        t_measure = time.perf_counter()
        while len(calls) < run.measure.min_iterations or time.perf_counter() - t_measure < run.measure.min_time_s:
            calls.append(workload.call(prepared.runnable))
        measured_time_s = time.perf_counter() - t_measure
    monitor_details, monitor_invalid = prepared.monitor.end_measured()

    metrics = workload.metrics(calls)
    invalid, warnings = quality(metrics, run.measure.max_cv)
    invalid += monitor_invalid
    units = energy_units(run.task, run.batch_size, run.workload, len(calls))
    telemetry_section, telemetry_invalid, telemetry_warnings = telemetry.finish(units)
    invalid, warnings = invalid + telemetry_invalid, warnings + telemetry_warnings
    warnings += tracker.warnings()  # NVML figures that are missing, and why
    fidelity = None
    if run.reference_path or run.reference_error:  # after timing: never inside a measured call
        fidelity, why_not = compute_fidelity(run, workload, prepared.runnable)
        if why_not:
            warnings.append(f"fidelity not computed: {why_not}")
    details = {
        "torch_threads": torch.get_num_threads(),
        "clock": clock.kind,
        **prepared.details,
        **monitor_details,
        **workload.details,
    }
    return Record(
        **base_record(run, str(device)),
        device_name=device_name(device),
        status="ok",
        valid=not invalid,
        invalid_reasons=invalid,
        warnings=warnings,
        details=details,
        parameters=prepared.parameters,
        weight_bytes=prepared.weight_bytes,
        quantization=prepared.quantization,
        fidelity=fidelity,
        telemetry=telemetry_section,
        started_at=started,
        duration_s=time.perf_counter() - t_process,
        cold_costs={"load_s": load_s, "first_call_s": first_call_s, **cold_metrics},
        memory=tracker.metrics(lifetime_peak),
        warmup_calls=run.measure.warmup,
        measured_time_s=measured_time_s,
        metrics=metrics,
    )


def compute_fidelity(run: RunSpec, workload, runnable):
    """(Fidelity | None, reason it is missing). Compares with the reference the runner computed."""
    from bench.measure import fidelity

    if run.reference_error:
        return None, run.reference_error
    try:
        outputs = workload.fidelity_outputs(runnable)
        return fidelity.compare(outputs, fidelity.load(run.reference_path), workload.fidelity_output), None
    except Exception as exc:  # a fidelity problem is reported, the timing stays valid
        traceback.print_exc()
        return None, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"


def write_reference(run: RunSpec, out_path: Path) -> None:
    """The fp32 eager outputs every run of this model and input set is compared with."""
    import torch

    from bench import models
    from bench.measure import fidelity
    from bench.measure.timing import make_clock
    from bench.workloads import WORKLOADS

    device = resolve_device(run.device)
    torch.manual_seed(run.measure.seed)
    workload_cls = WORKLOADS[run.task]
    ref = models.ModelRef(run.model, run.weights, run.model_kind, run.model_location)
    model = workload_cls.build(ref, torch.float32, device, seed=run.measure.seed)
    workload = workload_cls(run, device, make_clock(device))
    workload.prepare_inputs(model)
    fidelity.save(out_path, workload.fidelity_outputs(model))


def _exit_with_parent() -> None:
    """If the runner dies (killed sweep), don't leave a worker running on its own: Linux kills us
    with the parent (PR_SET_PDEATHSIG); elsewhere a watchdog thread notices the new parent."""
    parent = int(os.environ.get("BENCH_RUNNER_PID", os.getppid()))
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the runner died before prctl took effect
        os._exit(3)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, daemon=True).start()


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--reference":  # python -m bench.worker --reference SPEC OUT.pt
        _exit_with_parent()
        write_reference(RunSpec.model_validate_json(Path(argv[1]).read_text()), Path(argv[2]))
        return 0
    spec_path, result_path = Path(argv[0]), Path(argv[1])
    _exit_with_parent()
    run = RunSpec.model_validate_json(spec_path.read_text())
    started, t0 = now_iso(), time.perf_counter()
    try:
        if run.serving is not None:  # a serving point: one record per load level
            from bench.serving.run import measure_serving

            records = list(measure_serving(run))
        else:
            measured = measure(run)  # one Record, or a list of them
            records = measured if isinstance(measured, list) else [measured]
            for record in records:
                record.roofline = roofline.for_run(record, run)  # never raises: a problem is a note in the section
    except Exception as exc:  # a failing run is a record; the sweep goes on
        from bench.records import describe_exception, failed_record

        traceback.print_exc()
        try:
            device = str(resolve_device(run.device))
        except Exception:
            device = run.device
        records = [
            failed_record(
                run,
                "failed",
                describe_exception(exc),
                device=device,
                started_at=started,
                duration_s=time.perf_counter() - t0,
            )
        ]
    # The hand-off (bench.executors.local reads it): a JSON list of records, one compact line.
    tmp = result_path.with_name(result_path.name + ".tmp")
    tmp.write_text("[" + ",".join(r.model_dump_json() for r in records) + "]\n", encoding="utf-8")
    tmp.replace(result_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
