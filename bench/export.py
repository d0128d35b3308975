"""`bench export --format pytest-benchmark RUN_DIR`: one pytest-benchmark benchmark per matrix point, its
`stats` the per-call latency over every ok repeat's raw samples pooled; what the format has no field for goes
to `extra_info`. Points with no ok repeat are left out (docs/gate.md, docs/design.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bench.report.points import Point, group_points, primary_throughput
from bench.report.runs import load_runs

FORMATS = ("pytest-benchmark",)
PYTEST_BENCHMARK_VERSION = "5.1.0"  # the layout written here (the version field of its JSON)


def pytest_benchmark(run_dir: Path) -> tuple[dict[str, Any], int]:
    """(the JSON document, number of points left out because nothing measured)."""
    run = load_runs([run_dir])[0]
    env = run.environment or {}
    benchmarks, skipped = [], 0
    for point in group_points(run.records):
        samples = point.samples("latency_s")
        if not point.ok or not samples:
            skipped += 1
            continue
        benchmarks.append(_benchmark(point, samples))
    cpu = env.get("cpu") or {}
    doc = {
        "machine_info": {
            "node": env.get("hostname"),
            "processor": cpu.get("model"),
            "platform": env.get("platform"),
            "python_version": env.get("python"),
            "cpu": {"brand_raw": cpu.get("model"), "count": cpu.get("logical_cores")},
            "gpu": env.get("gpu_name"),
            "driver": env.get("driver"),
            "cuda": env.get("cuda"),
            "libraries": env.get("libraries"),
        },
        "commit_info": {
            "id": env.get("git_commit"),
            "dirty": env.get("git_dirty"),
            "project": "aigc-bench",
            "branch": None,
            "time": None,
            "author_time": None,
        },
        "benchmarks": benchmarks,
        "datetime": env.get("timestamp"),
        "version": PYTEST_BENCHMARK_VERSION,
    }
    return doc, skipped


def _benchmark(point: Point, samples: list[float]) -> dict[str, Any]:
    key, first = point.key, point.ok[0]
    ident = f"{key.model}-{key.backend}-{key.precision}-bs{key.batch_size}"
    tp = primary_throughput(first)
    extra: dict[str, Any] = {
        "unit": "seconds per call (one call = the whole batch)",
        "repeats": len(point.ok),
        "valid": all(r.valid is not False for r in point.ok),
        "device_name": first.device_name,
        "peak_memory_bytes": point.peak_memory_bytes,
    }
    if tp is not None:
        extra[tp[0].name] = point.throughput
    gated = [i.name for i in type(first.metrics).metric_infos.values() if i.distribution and i.gated]
    for name in (n for n in gated if n != "latency_s"):  # e.g. ttft_s, tpot_s
        value = point.stat(name, "p50")
        if value is not None:
            extra[f"{name}_p50"] = value
    extra = {k: v for k, v in extra.items() if v is not None}
    return {
        "group": key.scenario,
        "name": f"{key.scenario}[{ident}]",
        "fullname": f"{key.scenario}[{ident}-{key.device}]",
        "params": {
            "model": key.model,
            "weights": key.weights,
            "task": key.task,
            "device": key.device,
            "backend": key.backend,
            "precision": key.precision,
            "batch_size": key.batch_size,
            "workload": json.loads(key.workload),
            "backend_options": json.loads(key.backend_options),
        },
        "param": ident,
        "extra_info": extra,
        "options": {
            "disable_gc": False,
            "timer": first.details.get("clock", "perf_counter"),
            "min_rounds": min(r.metrics.latency_s.count for r in point.ok),
            "max_time": None,
            "min_time": None,
            "warmup": first.warmup_calls,
        },
        "stats": _stats(samples),
    }


def _stats(samples: list[float]) -> dict[str, Any]:
    data = np.asarray(samples, dtype=float)
    mean = float(data.mean())
    std = float(data.std(ddof=1)) if data.size > 1 else 0.0
    q1, median, q3 = (float(v) for v in np.percentile(data, [25, 50, 75]))
    iqr = q3 - q1
    low, high = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    inside = data[(data >= low) & (data <= high)]
    iqr_outliers = int(data.size - inside.size)
    std_outliers = int(((data < mean - std) | (data > mean + std)).sum())
    return {
        "min": float(data.min()),
        "max": float(data.max()),
        "mean": mean,
        "stddev": std,
        "rounds": int(data.size),
        "median": median,
        "iqr": iqr,
        "q1": q1,
        "q3": q3,
        "iqr_outliers": iqr_outliers,
        "stddev_outliers": std_outliers,
        "outliers": f"{std_outliers};{iqr_outliers}",
        "ld15iqr": float(inside.min()) if inside.size else float(data.min()),
        "hd15iqr": float(inside.max()) if inside.size else float(data.max()),
        "ops": 1.0 / mean if mean > 0 else None,
        "total": float(data.sum()),
        "data": [float(x) for x in data],
        "iterations": 1,
    }
