"""The verdict on hand-made records: expected picks, ratios and intervals computed by hand (and the intervals
checked against scipy's t distribution), expected strings written out literally."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from bench.measure.stats import Stats
from bench.report import write_report
from bench.report.points import DEFAULT_BASELINE, Baselines, group_points
from bench.report.verdict import log_ratio_interval, markdown_verdict, verdict, verdict_of_records
from bench.results import Record

MIB = 2**20


def record(
    backend: str,
    precision: str,
    repeat: int,
    tps: float | None,
    measured_mib: float | None = None,
    lifetime_mib: float | None = None,
    cosine: float | None = None,
    status: str = "ok",
    valid: bool = True,
    reasons: tuple[str, ...] = (),
    error: str | None = None,
    scenario: str = "s",
    batch: int = 4,
    cold: dict | None = None,
    details: dict | None = None,
) -> Record:
    data = dict(
        run_id=f"{scenario}-{backend}-{precision}-{repeat}",
        point_id=f"{backend}-{precision}",
        scenario=scenario,
        scenario_file=f"{scenario}.yaml",
        model="tiny-bert",
        weights="random",
        task="feature-extraction",
        backend=backend,
        precision=precision,
        batch_size=batch,
        workload={"sequence_length": 32},
        device="cpu",
        device_name="Test CPU",
        repeat=repeat,
        status=status,
        error=error,
    )
    if status == "ok":
        latency = batch / tps
        data.update(
            valid=valid,
            invalid_reasons=list(reasons),
            cold_costs=cold or {},
            details=details or {},
            memory={
                "host_rss_measured_peak_bytes": int(measured_mib * MIB),
                "host_rss_peak_bytes": int((lifetime_mib or measured_mib) * MIB),
            },
            metrics={
                "latency_s": Stats.of([latency] * 5).model_dump(),
                "sequences_per_s": tps,
                "input_tokens_per_s": tps * 32,
            },
        )
        if cosine is not None:
            data["fidelity"] = dict(
                reference="eager fp32 on cpu",
                output="pooled embedding",
                cosine_mean=cosine,
                cosine_min=cosine,
                max_abs_error=0.0,
                max_rel_error=0.0,
            )
    return Record.model_validate(data)


def sweep() -> list[Record]:
    return [
        record("eager", "fp32", 0, 100.0, 400),
        record("eager", "fp32", 1, 110.0, 404),
        record("onnxruntime", "fp32", 0, 250.0, 300, lifetime_mib=1000, cosine=0.9999999),
        record("onnxruntime", "fp32", 1, 260.0, 300, lifetime_mib=1000, cosine=0.9999999),
        record("onnxruntime", "int8", 0, 400.0, 200, lifetime_mib=1200, cosine=0.998),
        record("onnxruntime", "int8", 1, 420.0, 210, lifetime_mib=1200, cosine=0.998),
        # faster than everything, but too noisy to rank
        record(
            "eager",
            "fp16",
            0,
            900.0,
            100,
            valid=False,
            reasons=("latency_s coefficient of variation 40% exceeds max_cv 10%",),
        ),
        record(
            "eager",
            "int8",
            0,
            None,
            status="unsupported",
            error="backend eager on cpu does not support int8 for feature-extraction",
        ),
    ]


def test_interval_matches_scipy_welch():
    lo, hi = log_ratio_interval([400.0, 420.0], [100.0, 110.0])
    la, lb = np.log([400.0, 420.0]), np.log([100.0, 110.0])
    va, vb = la.var(ddof=1) / 2, lb.var(ddof=1) / 2
    df = (va + vb) ** 2 / (va**2 + vb**2)
    half = stats.t.ppf(0.975, df) * np.sqrt(va + vb)
    assert (lo, hi) == pytest.approx(
        (np.exp(la.mean() - lb.mean() - half), np.exp(la.mean() - lb.mean() + half)), rel=1e-6
    )
    assert log_ratio_interval([400.0], [100.0, 110.0]) is None  # one repeat: no spread to estimate


def test_card_picks_fastest_least_memory_and_within_bound():
    (card,) = verdict_of_records(sweep())
    lines = card.lines()
    assert card.title == "tiny-bert · feature-extraction · cpu (Test CPU)"
    # 410 / 105 = 3.90; interval by hand (and scipy above): 2.82–5.41
    assert lines[0] == (
        "**Fastest**: onnxruntime int8 · batch 4 — 410.0 sequences/s, 3.90× the baseline's "
        "throughput (95% interval 2.82–5.41×, 2 vs 2 repeats)"
    )
    # measured-phase peaks (not the 1.2 GiB whole-life peak with the export): 205 MiB / 402 MiB = 0.51
    assert lines[1] == (
        "**Least memory**: onnxruntime int8 · batch 4 — 205.00 MiB measured-phase peak (whole-life "
        "peak 1.17 GiB: loading, export, compile or quantization included), 0.51× the baseline's peak "
        "(95% interval 0.39–0.66×, 2 vs 2 repeats)"
    )
    # int8's worst cosine 0.998 is under the bound: fp32 ONNX Runtime is the fastest within it; 255 / 105 = 2.43
    assert lines[2] == (
        "**Fastest with cosine ≥ 0.999**: onnxruntime fp32 · batch 4 — 255.0 sequences/s, "
        "1 − cosine 1.0e-07, 2.43× the baseline's throughput (95% interval 1.67–3.53×, "
        "2 vs 2 repeats)"
    )
    assert lines[3] == "**Invalid** ⚠ (not ranked; reasons in the points table): eager fp16 · batch 4"
    assert lines[4] == (
        "**Unsupported** eager int8 · batch 4: unsupported: backend eager on cpu does not support "
        "int8 for feature-extraction"
    )
    assert len(lines) == 5


def test_fidelity_bound_is_configurable():
    (card,) = verdict_of_records(sweep(), min_cosine=0.99)
    assert card.lines()[2].startswith(
        "**Fastest with cosine ≥ 0.99**: onnxruntime int8 · batch 4 — 410.0 sequences/s, 1 − cosine 2.0e-03, 3.90×"
    )
    (card,) = verdict_of_records(sweep(), min_cosine=0.99999999)
    assert card.lines()[2].startswith(
        "**Fastest with cosine ≥ 1**: eager fp32 · batch 4 — 105.0 sequences/s, 1 − cosine 0, the baseline itself"
    )


def test_single_repeat_has_no_interval_and_invalid_baseline_is_flagged():
    records = [
        record("eager", "fp32", 0, 100.0, 400, valid=False, reasons=("too few samples for p99",)),
        record("onnxruntime", "fp32", 0, 150.0, 300),
    ]
    (card,) = verdict_of_records(records)
    assert card.lines()[0] == (
        "**Fastest**: onnxruntime fp32 · batch 4 — 150.0 sequences/s, 1.50× the baseline's "
        "throughput (1 vs 1 repeat: no interval) ⚠ against an invalid baseline (too few "
        "samples for p99)"
    )


def test_the_verdict_heads_summary_markdown():
    from bench.summary import markdown

    text = markdown(sweep())
    assert text.startswith("## Verdict\n\n### tiny-bert · feature-extraction · cpu (Test CPU)\n")
    assert text.index("**Fastest**") < text.index("## Every record")


def write_run(path: Path, records: list[Record]) -> Path:
    path.mkdir(parents=True)
    (path / "results.jsonl").write_text("".join(json.dumps(r.model_dump(mode="json")) + "\n" for r in records))
    return path


def test_points_of_two_scenario_files_and_run_dirs_line_up(tmp_path):
    """eager fp32 in one run directory (scenario file a.yaml), ONNX Runtime in another (b.yaml): one card,
    ratios against the other directory's baseline."""
    eager = write_run(
        tmp_path / "eager-run",
        [record("eager", "fp32", i, tps, 400, scenario="eager-only") for i, tps in enumerate((100.0, 110.0))],
    )
    ort = write_run(
        tmp_path / "ort-run",
        [
            record("onnxruntime", "fp32", i, tps, 300, scenario="ort-only", cosine=0.9999999)
            for i, tps in enumerate((250.0, 260.0))
        ],
    )
    files = write_report([eager, ort], tmp_path / "out")
    md = files.markdown.read_text(encoding="utf-8")
    assert "No measured baseline point" not in md
    assert md.count("### tiny-bert · feature-extraction · cpu (Test CPU)") == 1
    assert (
        "**Fastest**: onnxruntime fp32 · batch 4 (ort-run) — 255.0 sequences/s, 2.43× the baseline's "
        "throughput (95% interval 1.67–3.53×, 2 vs 2 repeats), baseline from eager-run"
    ) in md
    # the main table: one row per point of either run, speedup against the other run's baseline
    table = md[md.index("| run | backend") :]
    rows = [ln for ln in table.splitlines() if ln.startswith("| ")][1:3]  # after the header
    assert [r.split(" | ")[:3] for r in rows] == [
        ["| eager-run", "eager", "fp32"],
        ["| ort-run", "onnxruntime", "fp32"],
    ]
    assert "| baseline |" in rows[0] and "| 2.43× |" in rows[1] and "| 0.75× |" in rows[1]  # 300 / 400 MiB


def test_points_across_runs_directly():
    a = group_points([record("eager", "fp32", 0, 100.0, 400, scenario="x")], by_scenario=False, run="a")
    b = group_points(
        [
            record("onnxruntime", "fp32", 0, 200.0, 300, scenario="y"),
            record("eager", "fp32", 0, 50.0, 400, scenario="y"),
        ],
        by_scenario=False,
        run="b",
    )
    baselines = Baselines(a + b, dict(DEFAULT_BASELINE))
    ort = b[0]
    assert baselines.of(ort) is b[1]  # the same run directory's baseline first
    assert baselines.of(a[0]) is a[0]
    text = markdown_verdict(verdict(a + b, baselines))
    assert re.search(r"onnxruntime fp32 · batch 4 \(b\) — 200\.0 sequences/s, 4\.00× the baseline's", text)


def test_a_point_with_its_own_backend_options_gets_the_eager_baseline():
    """A compile point from a scenario file with compile options (and no eager options) has eager fp32 of the
    other file as its baseline; eager with default options wins over eager with options of its own."""
    eager = record("eager", "fp32", 0, 50.0, 400, scenario="x")
    tuned_eager = record("eager", "fp32", 0, 60.0, 400, scenario="z").model_copy(update={"backend_options": {"k": 1}})
    loop = record("compile", "fp32", 0, 150.0, 400, scenario="y").model_copy(
        update={"backend_options": {"generation": "loop", "freezing": True}}
    )
    points = group_points([tuned_eager, eager, loop], by_scenario=False, run="a")
    baselines = Baselines(points, dict(DEFAULT_BASELINE))
    by_records = {id(p.records[0]): p for p in points}
    assert baselines.of(by_records[id(loop)]) is by_records[id(eager)]
    text = markdown_verdict(verdict(points, baselines))
    assert "3.00× the baseline's" in text, text  # 150 / 50, hand-computed


def test_details_table_cold_costs_memory_and_fidelity_digits():
    from bench.report.tables import points_table

    records = [
        record("eager", "fp32", 0, 100.0, 400),
        record(
            "onnxruntime",
            "fp32",
            0,
            250.0,
            300,
            lifetime_mib=1000,
            cosine=0.9999996,
            cold={"export_s": 0.0, "session_s": 0.5},
            details={"export_cache": "hit"},
        ),
        record(
            "onnxruntime",
            "int8",
            0,
            400.0,
            200,
            lifetime_mib=1200,
            cosine=1.0,
            cold={"export_s": 12.5, "session_s": 0.5, "quantize_s": 3.0},
            details={"export_cache": "miss"},
        ),
    ]
    points = group_points(records, by_scenario=False)
    table = points_table(points, Baselines(points, dict(DEFAULT_BASELINE)))
    rows = {(r[0], r[1]): dict(zip(table.columns, r)) for r in table.rows}
    hit, miss = rows[("onnxruntime", "fp32")], rows[("onnxruntime", "int8")]
    assert hit["export"] == "cached" and miss["export"] == "12.50 s"  # a cache hit is not "0 us"
    assert hit["peak memory"] == "300.00 MiB" and hit["whole-life peak"] == "1000.00 MiB"
    assert hit["1 − cosine"] == "4.0e-07" and miss["1 − cosine"] == "0"  # cosine 0.9999996 no longer prints as 1
    assert hit["speedup"] == "2.50×" and hit["memory ratio"] == "0.75×"
    assert any("whole-life peak also holds" in n for n in table.notes)


def test_cli_min_cosine(tmp_path):
    from conftest import run_cli

    run = write_run(tmp_path / "run", sweep())
    proc = run_cli("report", str(run), "--out", str(tmp_path / "out"), "--min-cosine", "0.99")
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "fidelity bound: cosine ≥ 0.99." in md
    assert "**Fastest with cosine ≥ 0.99**: onnxruntime int8 · batch 4 — 410.0 sequences/s, 1 − cosine 2.0e-03" in md
