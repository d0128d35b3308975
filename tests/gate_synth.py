"""Synthetic run directories for the gate's tests: records whose samples come from a known model.

log(latency of call i of repeat r) = log(base · factor) + N(0, between) (per repeat) + N(0, within) (per call)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bench.measure.memory import MemoryMetrics
from bench.measure.stats import Stats
from bench.results import Record
from bench.workloads.text_generation import TextGenerationMetrics

ENV: dict[str, Any] = {
    "timestamp": "2026-11-23T00:00:00+00:00",
    "command": "bench run synthetic",
    "hostname": "synth",
    "cpu": {"model": "Synthetic CPU", "logical_cores": 2, "torch_threads": 2},
    "gpus": [],
    "gpu_name": None,
    "driver": None,
    "cuda": None,
    "libraries": {"torch": "2.13.0+cpu", "transformers": "4.57.6"},
    "git_commit": "0" * 40,
    "git_dirty": False,
}
BATCH, PROMPT, NEW = 1, 32, 32


def record(
    scenario: str,
    repeat: int,
    latencies: np.ndarray,
    ttft_fraction: float = 0.1,
    rss: float = 400e6,
    batch: int = BATCH,
    precision: str = "fp32",
    valid: bool = True,
    status: str = "ok",
    details: dict[str, Any] | None = None,
    model: str = "tiny-gpt2",
    keep_samples: bool = True,
) -> Record:
    base = dict(
        run_id=f"{scenario}-{precision}-{batch}-{repeat}",
        point_id=f"{scenario}-{precision}-{batch}",
        scenario=scenario,
        scenario_file=f"{scenario}.yaml",
        model=model,
        weights="random",
        task="text-generation",
        backend="eager",
        precision=precision,
        batch_size=batch,
        workload={"prompt_tokens": PROMPT, "new_tokens": NEW},
        device="cpu",
        device_name="Synthetic CPU",
        repeat=repeat,
        details=details or {},
    )
    if status != "ok":
        return Record(**base, status=status, error=f"synthetic {status}")
    lat = np.asarray(latencies, dtype=float)
    ttft = lat * ttft_fraction
    tpot = (lat - ttft) / (NEW - 1)
    metrics = TextGenerationMetrics(
        latency_s=Stats.of(lat, keep_samples),
        ttft_s=Stats.of(ttft, keep_samples),
        tpot_s=Stats.of(tpot, keep_samples),
        output_tokens_per_s=batch * NEW / lat.mean(),
        requests_per_s=batch / lat.mean(),
        prefill_tokens_per_s=batch * PROMPT / ttft.mean(),
        decode_tokens_per_s=batch * (NEW - 1) / (lat - ttft).mean(),
    )
    invalid = [] if valid else ["latency_s coefficient of variation 30.0% exceeds max_cv 10%"]
    return Record(
        **base,
        status="ok",
        valid=valid,
        invalid_reasons=invalid,
        metrics=metrics,
        memory=MemoryMetrics(host_rss_peak_bytes=int(rss)),
        cold_costs={"load_s": 1.0, "first_call_s": 0.1},
        warmup_calls=1,
        measured_time_s=float(lat.sum()),
    )


def side(
    scenario: str = "synth",
    factor: float = 1.0,
    repeats: int = 5,
    calls: int = 30,
    between: float = 0.01,
    within: float = 0.03,
    seed: int = 0,
    base: float = 0.020,
    **kw: Any,
) -> list[Record]:
    rng = np.random.default_rng(seed)
    out = []
    for r in range(repeats):
        level = base * factor * np.exp(rng.normal(0, between))
        out.append(record(scenario, r, level * np.exp(rng.normal(0, within, calls)), **kw))
    return out


def write_run(path: Path, records: list[Record], env: dict[str, Any] | None = ENV) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "results.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in records))
    if env is not None:
        (path / "environment.json").write_text(json.dumps(env))
    return path


def scaled(records: list[Record], factor: float) -> list[Record]:
    """A copy of synthetic records with every call `factor` times slower (time metrics × factor, rates / factor):
    what the issue's "slowed copy" of a run is."""
    out = []
    for r in records:
        lat = np.asarray(r.metrics.latency_s.samples) * factor
        out.append(record(r.scenario, r.repeat, lat, batch=r.batch_size, precision=r.precision, model=r.model))
    return out


def run_of_points(
    points: list[dict[str, Any]],
    repeats: int,
    between: float,
    within: float,
    calls: int,
    seed: int,
    factor: float = 1.0,
    scenario: str = "tiny-llama-decode",
    model: str = "tiny-llama",
) -> list[Record]:
    """One `bench run --repeats R` of several points (e.g. batch sizes), each point's repeats with per-repeat
    log noise N(0, between) (a float: the same for every point; a list: one per point) and per-call N(0, within)."""
    rng = np.random.default_rng(seed)
    sds = between if isinstance(between, list) else [between] * len(points)
    out = []
    for sd, point in zip(sds, points):
        base = point.get("base", 0.020)
        for r in range(repeats):
            level = base * factor * np.exp(rng.normal(0, sd))
            out.append(
                record(
                    scenario,
                    r,
                    level * np.exp(rng.normal(0, within, calls)),
                    model=model,
                    **{k: v for k, v in point.items() if k != "base"},
                )
            )
    return out
