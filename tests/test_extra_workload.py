"""A workload defined in this module alone (a plain matmul), registered through BENCH_WORKLOAD_MODULES, runs
through `bench run` -> results.jsonl -> `bench report` -> `bench compare` with no edit to the package; and
the record's validation: workload metrics and cold costs are what was declared, nothing else."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from bench.measure.stats import Stats
from bench.workloads.base import Workload
from bench.workloads.metrics import Metric, ReportColumn, WorkloadMetrics

from shared_sweeps import shared_sweep

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent


class MatMulSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repeat_matmuls: int = 4  # matmuls per call


class MatMulMetrics(WorkloadMetrics):
    latency_s: Annotated[Stats, Metric("s", "lower", "one call: repeat_matmuls products of the batch", gated=True)]
    matmuls_per_s: Annotated[
        float, Metric("matmuls/s", "higher", "batch × repeat_matmuls / mean latency", gated=True, rate_of="latency_s")
    ]


class MatMul(Workload):
    """x @ W, `repeat_matmuls` times, W: [hidden, hidden] of the scenario model's config (a Linear, no bias)."""

    task = "matmul"
    Spec = MatMulSpec
    Metrics = MatMulMetrics
    primary = "matmuls_per_s"
    report_columns = (ReportColumn("latency p90", "latency_s", "p90"),)
    fidelity_output = "x @ W"

    @classmethod
    def build(cls, ref: Any, dtype: Any, device: Any, seed: int = 0) -> Any:
        import torch

        from bench.models import load_config

        hidden = load_config(ref).hidden_size
        torch.manual_seed(seed)
        return torch.nn.Linear(hidden, hidden, bias=False).to(device=device, dtype=dtype).eval().requires_grad_(False)

    @classmethod
    def parameter_count(cls, config: Any) -> int:
        return config.hidden_size**2

    def prepare_inputs(self, runnable: Any) -> None:
        import torch

        gen = torch.Generator().manual_seed(self.run.measure.seed)
        x = torch.randn(self.run.batch_size, runnable.in_features, generator=gen)
        self.x = x.to(device=self.device, dtype=runnable.weight.dtype)

    def call(self, runnable: Any) -> dict[str, Any]:
        import torch

        with torch.inference_mode():
            start = self.clock.mark()
            for _ in range(self.spec.repeat_matmuls):
                runnable(self.x)
            end = self.clock.mark()
        return {"latency_s": self.clock.seconds(start, end)}

    def fidelity_outputs(self, runnable: Any) -> dict[str, Any]:
        import torch

        with torch.inference_mode():
            return {"primary": runnable(self.x).float().cpu()}

    def metrics(self, calls: list[dict[str, Any]]) -> MatMulMetrics:
        latency = Stats.of([c["latency_s"] for c in calls])
        return MatMulMetrics(
            latency_s=latency, matmuls_per_s=self.run.batch_size * self.spec.repeat_matmuls / latency.mean
        )


WORKLOAD = MatMul  # what BENCH_WORKLOAD_MODULES registers


def bench(*args: str, tmp: Path, extra: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join([str(REPO), str(HERE)]))
    if extra:
        env["BENCH_WORKLOAD_MODULES"] = Path(__file__).stem
    else:
        env.pop("BENCH_WORKLOAD_MODULES", None)
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True, cwd=tmp, env=env, timeout=600
    )


# `bench run matmul.yaml --out run --repeats 2` in its own directory, with this module as a workload module: run
# with the other shared sweeps (tests/shared_sweeps.py)
matmul_sweep = shared_sweep(
    "matmul_sweep",
    {
        "matmul.yaml": textwrap.dedent("""
        name: matmul
        task: matmul
        model: {name: tiny-bert}
        device: cpu
        matrix: {backend: eager, precision: fp32, batch_size: [1, 8]}
        workload: {repeat_matmuls: 3}
        measure: {warmup: 1, min_iterations: 5, min_time_s: 0, timeout_s: 240, max_cv: 100.0}
        """)
    },
    "--repeats",
    "2",
    timeout_s=600,
    env={"BENCH_WORKLOAD_MODULES": Path(__file__).stem},
    pythonpath=(str(REPO), str(HERE)),
    in_dir=True,
    workers=6,  # four runs, two references
)


@pytest.fixture(scope="module")
def matmul_run(matmul_sweep):
    tmp = matmul_sweep.check().dir
    lines = [json.loads(line) for line in (tmp / "run" / "results.jsonl").read_text().splitlines() if line.strip()]
    return tmp, lines


def test_a_workload_defined_in_a_test_runs_through_bench_run(matmul_run):
    _, lines = matmul_run
    hidden = json.loads((REPO / "bench" / "models" / "configs" / "tiny-bert.json").read_text())["hidden_size"]
    assert len(lines) == 4 and {(r["batch_size"], r["repeat"]) for r in lines} == {(1, 0), (1, 1), (8, 0), (8, 1)}
    for r in lines:
        assert r["status"] == "ok" and r["task"] == "matmul" and r["schema_version"] == 2, r.get("error")
        # the workload's own metrics, and nothing of the built-in workloads' (no union with null fields)
        assert set(r["metrics"]) == {"latency_s", "matmuls_per_s"}
        samples = r["metrics"]["latency_s"]["samples"]
        assert len(samples) == r["metrics"]["latency_s"]["count"] >= 5
        # a second clock: the measured phase's wall time covers its calls
        assert sum(samples) <= r["measured_time_s"]
        assert set(r["cold_costs"]) == {"load_s", "first_call_s"} and r["cold_costs"]["first_call_s"] > 0
        assert r["parameters"] == hidden**2 and r["weight_bytes"] == 4 * hidden**2
        assert r["fidelity"]["cosine_min"] == pytest.approx(1.0)  # fp32 eager against its own fp32 reference
        assert "no analytic model of task matmul" in r["roofline"]["notes"]


def test_report_and_compare_read_the_extra_workload(matmul_run):
    tmp, lines = matmul_run
    proc = bench("report", "run", tmp=tmp)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    md = (tmp / "run" / "report" / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("|") and "matmuls/s" in line)  # not the verdict
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert "latency p90" in cells  # the workload's own report column
    col = cells.index("matmuls/s")
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in md.splitlines()
        if line.startswith("| eager |") and len(line.split("|")) == len(header.split("|"))
    ]
    by_batch = {int(row[cells.index("batch")]): row for row in rows}
    for batch in (1, 8):
        mean = sum(r["metrics"]["matmuls_per_s"] for r in lines if r["batch_size"] == batch) / 2
        assert float(by_batch[batch][col]) == pytest.approx(mean, rel=1e-3, abs=0.05)

    proc = bench("compare", "run", "run", "--format", "json", tmp=tmp)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    compared = {(c["point"]["batch_size"], c["metric"]): c for c in data["comparisons"]}
    # exactly what the workload declares gated, plus the common memory peak (the CPU has no CUDA peaks)
    assert set(compared) == {
        (b, m) for b in (1, 8) for m in ("latency_s", "matmuls_per_s", "memory.host_rss_peak_bytes")
    }
    for batch in (1, 8):
        for metric, unit, direction in (
            ("latency_s", "s", "lower is better"),
            ("matmuls_per_s", "matmuls/s", "higher is better"),
        ):
            c = compared[batch, metric]
            assert c["ratio"] == pytest.approx(1.0) and c["unit"] == unit and c["direction"] == direction


def test_records_of_an_unregistered_workload_are_not_read_as_something_else(matmul_run):
    from bench.results import Record

    _, lines = matmul_run
    with pytest.raises(ValidationError, match="task 'matmul' has no registered workload"):
        Record.model_validate(lines[0])


# --- validation: metrics and cold costs as declared ------------------------------------------------------


def _ok_record(**changes: Any) -> dict[str, Any]:
    lat = {
        "count": 3,
        "mean": 0.5,
        "std": 0.0,
        "min": 0.5,
        "p50": 0.5,
        "p90": 0.5,
        "p95": 0.5,
        "p99": 0.5,
        "max": 0.5,
        "samples": [0.5, 0.5, 0.5],
    }
    base = dict(
        run_id="r",
        point_id="p",
        scenario="s",
        scenario_file="s.yaml",
        model="tiny-bert",
        weights="random",
        task="feature-extraction",
        backend="eager",
        precision="fp32",
        batch_size=2,
        device="cpu",
        status="ok",
        cold_costs={"load_s": 1.0, "first_call_s": 0.1},
        metrics={"latency_s": lat, "sequences_per_s": 4.0, "input_tokens_per_s": 32.0},
    )
    return base | changes


def test_workload_metrics_reject_keys_of_other_workloads():
    from bench.results import Record

    r = Record.model_validate(_ok_record())
    assert type(r.metrics).__name__ == "FeatureExtractionMetrics" and r.metrics.sequences_per_s == 4.0
    bad = _ok_record()
    bad["metrics"] = {**bad["metrics"], "output_tokens_per_s": 1.0}  # a text-generation metric
    with pytest.raises(ValidationError, match="output_tokens_per_s"):
        Record.model_validate(bad)
    missing = _ok_record()
    del missing["metrics"]["sequences_per_s"]
    with pytest.raises(ValidationError, match="sequences_per_s"):
        Record.model_validate(missing)


def test_an_undeclared_cold_cost_fails_loudly():
    from bench.results import Record

    with pytest.raises(ValidationError, match="engine_build_s not declared by backend 'eager'"):
        Record.model_validate(_ok_record(cold_costs={"load_s": 1.0, "engine_build_s": 3.0}))
    # compile declares compile_s; eager does not
    with pytest.raises(ValidationError, match="compile_s not declared by backend 'eager'"):
        Record.model_validate(_ok_record(cold_costs={"compile_s": 3.0}))
    assert Record.model_validate(_ok_record(backend="compile", cold_costs={"compile_s": 3.0})).cold_costs == {
        "compile_s": 3.0
    }


def test_schema_1_records_are_read_in_the_new_shape():
    """tests/fixtures/schema-1 keeps five schema-1 records on purpose (failed, ok, int8, unsupported, invalid; cut
    from a recorded run): each field lands at its new path with its value unchanged."""
    from bench.results import read_records

    path = REPO / "tests" / "fixtures" / "schema-1" / "results.jsonl"
    raw = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    records = read_records(path)
    assert len(records) == len(raw) and all(r["schema_version"] == 1 for r in raw)
    assert {r["status"] for r in raw} == {"ok", "failed", "unsupported"} and {r["valid"] for r in raw} >= {True, False}
    assert any(r["metrics"] and r["metrics"].get("quantize_s") for r in raw)  # a cold cost of int8 moves too
    for old, new in zip(raw, records):
        assert new.run_id == old["run_id"] and new.schema_version == 2
        if old["metrics"] is None:
            assert new.metrics is None and new.memory is None
            continue
        m = old["metrics"]
        assert new.metrics.output_tokens_per_s == m["throughput"]["output_tokens_per_s"]
        assert new.metrics.decode_tokens_per_s == m["throughput"]["decode_tokens_per_s"]
        assert new.metrics.latency_s.samples == m["latency_s"]["samples"]
        assert new.memory.model_dump() == m["memory"]
        assert new.cold_costs == {
            k: m[k]
            for k in ("load_s", "first_call_s", "compile_s", "export_s", "quantize_s", "session_s")
            if m.get(k) is not None
        }
        assert new.warmup_calls == m["warmup_calls"] and new.measured_time_s == m["measured_time_s"]
        assert new.workload == old["workload"] and new.workload["prompt_tokens"] == old["prompt_tokens"]


def test_a_schema_1_run_directory_reads_into_points_with_their_schema_1_figures():
    """The report's and the gate's reader (load_runs, group_points) go through the upgrade: every schema-1
    record is a point with its status, its throughput is the schema-1 `metrics.throughput` figure and its peak
    memory the schema-1 `metrics.memory` one."""
    from bench.report.points import group_points
    from bench.report.runs import load_runs

    d = REPO / "tests" / "fixtures" / "schema-1"
    raw = [json.loads(line) for line in (d / "results.jsonl").read_text().splitlines() if line.strip()]
    (run,) = load_runs([d])
    points = group_points(run.records)
    assert [(p.key.scenario, p.key.backend, p.key.precision, p.status) for p in points] == [
        (r["scenario"], r["backend"], r["precision"], r["status"]) for r in raw
    ]
    for p, r in zip(points, raw):
        assert p.invalid_reasons == r["invalid_reasons"]
        if r["status"] == "ok":
            assert p.throughput == r["metrics"]["throughput"]["output_tokens_per_s"]
            assert p.peak_memory_bytes == r["metrics"]["memory"]["host_rss_measured_peak_bytes"]
        else:
            assert p.throughput is None
