"""`bench report` from recorded fixture results (tests/fixtures/README.md says how they were made).

Expected values are computed here from the records, independently of bench.report's own aggregation.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib import image as mpimg

from bench.errors import BenchInputError
from bench.report import write_report
from bench.report.charts import ChartGroup, draw_all
from bench.report.points import DEFAULT_BASELINE, Baselines, group_points
from bench.report.tables import points_table, sort_points
from bench.results import Fidelity, read_records
from bench.summary import fmt_bytes, fmt_seconds

from conftest import REPO, covering, run_cli

FIXTURES = REPO / "tests" / "fixtures"
TWO_THREADS = FIXTURES / "cpu-2threads"  # two repeats per point
ONE_THREAD = FIXTURES / "cpu-1thread"  # one repeat per point, OMP_NUM_THREADS=1
MEASURED = {"tiny-gpt2-decode": "tiny-gpt2", "tiny-llama-decode": "tiny-llama"}  # scenario → model
# Report sections are per model × task × device (what the points measure), not per scenario file.
DEVICE = {r.device_name for r in read_records(TWO_THREADS / "results.jsonl") if r.device_name}.pop()
SECTION = {scenario: f"{model} · text-generation · cpu ({DEVICE})" for scenario, model in MEASURED.items()}
FAILED_SECTION = "no-weights · text-generation · cpu · pretrained weights"
CHART_KINDS = ("quantization", "throughput-vs-batch", "latency", "throughput-vs-memory", "fidelity-vs-speedup")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("two-runs")
    files = write_report([TWO_THREADS, ONE_THREAD], out)
    return files, files.markdown.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def one_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("one-run")
    files = write_report([ONE_THREAD], out)
    return files, files.markdown.read_text(encoding="utf-8")


def tables_by_heading(markdown: str) -> dict[str, list[dict[str, str]]]:
    """The first markdown table under each heading path ("tiny-gpt2-decode · tiny-gpt2 / Points"), as rows
    keyed by column name."""
    tables: dict[str, list[dict[str, str]]] = {}
    h2 = heading = ""
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            h2 = heading = line[3:]
        elif line.startswith("### "):
            heading = f"{h2} / {line[4:]}"
        elif line.startswith("| ") and heading not in tables:
            header = _cells(line)
            rows = []
            i += 2  # the |---| line
            while i < len(lines) and lines[i].startswith("| "):
                rows.append(dict(zip(header, _cells(lines[i]))))
                i += 1
            tables[heading] = rows
            continue
        i += 1
    return tables


def _cells(line: str) -> list[str]:
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def row_of(
    rows: list[dict[str, str]], backend: str, precision: str, batch: int, run: str | None = None
) -> dict[str, str]:
    (row,) = [
        r
        for r in rows
        if (r["backend"], r["precision"], r["batch"]) == (backend, precision, str(batch))
        and (run is None or r["run"] == run)
    ]
    return row


def of_run(rows: list[dict[str, str]], run: str) -> list[dict[str, str]]:
    return [r for r in rows if r["run"] == run]


def points_of(run_dir: Path, scenario: str) -> dict[tuple[str, str, int], list]:
    points: dict[tuple[str, str, int], list] = {}
    for r in read_records(run_dir / "results.jsonl"):
        if r.scenario == scenario:
            points.setdefault((r.backend, r.precision, r.batch_size), []).append(r)
    return points


SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
BYTES = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}


def cell_matches(cell: str, value: float, units: dict[str, float]) -> bool:
    """A printed figure ("12.3 ms", "1.50 GiB") read back with its own unit: equal to `value` up to half a
    unit of its last printed digit. The package's formatters are not used to build the expected cell."""
    number, unit = cell.split(" ")
    decimals = len(number.split(".")[1]) if "." in number else 0
    scale = units[unit]
    return abs(float(number) * scale - value) <= 0.5 * 10**-decimals * scale * (1 + 1e-9)


def percentile_by_hand(samples: list[float], q: float) -> float:
    """Linear interpolation between the two order statistics around rank q/100 × (n - 1)."""
    xs = sorted(samples)
    rank = q / 100 * (len(xs) - 1)
    lo = int(rank)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (rank - lo) * (xs[hi] - xs[lo])


def test_formatters_print_literal_strings():
    assert [fmt_seconds(x) for x in (2.345, 1.0, 0.01234, 0.001, 0.000987, 1.2e-5, None)] == [
        "2.35 s",
        "1.00 s",
        "12.3 ms",
        "1.0 ms",
        "987 us",
        "12 us",
        "-",
    ]
    assert [fmt_bytes(b) for b in (3 * 2**30, 1536 * 2**20, 2**20 + 2**19, 2048, 1023, 0, None)] == [
        "3.00 GiB",
        "1.50 GiB",
        "1.50 MiB",
        "2.00 KiB",
        "1023 B",
        "-",
        "-",
    ]
    assert percentile_by_hand([4.0, 1.0, 3.0, 2.0, 5.0], 90) == pytest.approx(4.6)
    assert cell_matches("12.3 ms", 0.01234, SECONDS) and not cell_matches("12.3 ms", 0.01236, SECONDS)


def mean_tps(records) -> float:
    return float(np.mean([r.metrics.output_tokens_per_s for r in records if r.status == "ok"]))


def mean_peak(records) -> float:
    """The measured phase's peak (the report's peak memory since the verdict change; whole-life before)."""
    return float(np.mean([r.memory.host_rss_measured_peak_bytes for r in records if r.status == "ok"]))


# --- content -----------------------------------------------------------------------------------------------


def test_every_section_present(two_runs):
    files, md = two_runs
    html = files.html.read_text(encoding="utf-8")
    headings = [
        "# Benchmark report",
        "## Verdict",
        "## Runs",
        "## How to read this report",
        "## Environment",
        f"## {FAILED_SECTION}",
    ]
    for scenario in MEASURED:
        headings += [
            f"## {SECTION[scenario]}",
            f"### {SECTION[scenario]}",
            "### Points",
            "### Details",
            "### Across runs",
            "### Charts",
        ]  # one chart set per model across both runs
    headings += [
        "#### Quantization gains: throughput and peak memory by precision",
        "#### Throughput vs batch size",
        "#### Latency distribution",
        "#### Throughput vs peak memory",
        "#### Fidelity vs speedup",
        "#### Charts not drawn",
    ]
    for h in headings:
        assert f"\n{h}\n" in f"\n{md}", f"markdown lacks {h!r}"
        level, text = h.split(" ", 1)
        assert re.search(f">{re.escape(text)}</h{len(level)}>", html), f"HTML lacks {h!r}"
    # The records carry fidelity (compared with eager fp32): its columns; no compile column (eager only).
    assert "| 1 − cosine | fidelity (cosine) | token agreement |" in md and "| compile |" not in md


def test_environment_section_lists_each_run(two_runs):
    _, md = two_runs
    env = {row[""]: row for row in tables_by_heading(md)["Environment"]}
    assert env["torch threads"]["cpu-2threads"] == "2" and env["torch threads"]["cpu-1thread"] == "1"
    # rows equal on both runs are one line under the table (layout change: no longer one row per field)
    assert "torch" not in env and re.search(r"\*Same on all runs: .*; torch 2\.", md)
    assert "OMP_NUM_THREADS=1" in env["environment variables"]["cpu-1thread"]
    assert env["command"]["cpu-2threads"].startswith("bench run")
    import json

    commits = {json.loads((d / "environment.json").read_text())["git_commit"][:12] for d in (TWO_THREADS, ONE_THREAD)}
    if len(commits) == 1:
        assert re.search(rf"\*Same on all runs: .*; project commit {commits.pop()}", md)
    else:
        assert {env["project commit"][d.name][:12] for d in (TWO_THREADS, ONE_THREAD)} == commits
    assert env["date"]["cpu-1thread"] != "-"


def test_point_numbers_equal_the_records(one_run):
    _, md = one_run
    tables = tables_by_heading(md)
    for scenario in MEASURED:
        rows = tables[f"{SECTION[scenario]} / Details"]  # every column (the main table has the decision ones)
        points = points_of(ONE_THREAD, scenario)
        assert len(rows) == len(points)
        for (backend, precision, batch), (r,) in points.items():
            row = row_of(rows, backend, precision, batch)
            if r.status != "ok":
                assert row["status"] == r.status and r.error.split(" (")[0] in row["note"]
                assert row["tokens/s"] == "-"
                continue
            m = r.metrics
            assert row["tokens/s"] == f"{m.output_tokens_per_s:.1f}"
            for column, value in (
                ("TTFT p50", m.ttft_s.p50),
                ("TTFT p95", m.ttft_s.p95),
                ("TTFT p99", m.ttft_s.p99),
                ("TPOT p50", m.tpot_s.p50),
                ("TPOT p95", m.tpot_s.p95),
                ("TPOT p99", m.tpot_s.p99),
                ("latency p50", m.latency_s.p50),
                ("latency p99", m.latency_s.p99),
            ):
                assert cell_matches(row[column], value, SECONDS), (column, value, row)
            # the measured phase's peak, and the whole-life one beside it in Details
            assert cell_matches(row["peak memory"], r.memory.host_rss_measured_peak_bytes, BYTES), row
            assert cell_matches(row["whole-life peak"], r.memory.host_rss_peak_bytes, BYTES), row
            if r.valid is False:
                assert row["status"] == "ok ⚠"
                assert all(reason in row["note"] for reason in r.invalid_reasons)
            else:
                assert row["status"] == "ok" and "⚠" not in row["note"]


def test_failed_and_unsupported_points_keep_their_reason(two_runs):
    _, md = two_runs
    tables = tables_by_heading(md)
    (failed,) = of_run(tables[f"{FAILED_SECTION} / Points"], "cpu-2threads")
    assert failed["status"] == "failed" and "pretrained weights for 'no-weights' not found" in failed["note"]
    assert failed["repeats"] == "0/2"
    fp16 = row_of(tables[f"{SECTION['tiny-gpt2-decode']} / Points"], "onnxruntime", "fp16", 4, "cpu-2threads")
    assert fp16["status"] == "unsupported" and "does not support fp16" in fp16["note"]


def test_repeats_are_aggregated(two_runs):
    """Throughput and memory: mean of the repeats; percentiles: from the pooled raw samples."""
    _, md = two_runs
    rows = of_run(tables_by_heading(md)[f"{SECTION['tiny-gpt2-decode']} / Details"], "cpu-2threads")
    for key, records in points_of(TWO_THREADS, "tiny-gpt2-decode").items():
        if records[0].status != "ok":
            continue
        assert len(records) == 2
        row = row_of(rows, *key)
        assert row["tokens/s"] == f"{mean_tps(records):.1f}"
        assert cell_matches(row["peak memory"], mean_peak(records), BYTES), row
        pooled = [x for r in records for x in r.metrics.latency_s.samples]
        assert cell_matches(row["latency p50"], percentile_by_hand(pooled, 50), SECONDS), row
        assert cell_matches(row["latency p99"], percentile_by_hand(pooled, 99), SECONDS), row
        assert row["repeats"] == "2/2"
        if any(r.valid is False for r in records):
            assert "⚠" in row["status"]


def test_baseline_ratios(two_runs):
    _, md = two_runs
    tables = tables_by_heading(md)
    checked = 0
    for run_dir in (TWO_THREADS, ONE_THREAD):
        for scenario in MEASURED:
            rows = of_run(tables[f"{SECTION[scenario]} / Points"], run_dir.name)
            points = points_of(run_dir, scenario)
            for (backend, precision, batch), records in points.items():
                row = row_of(rows, backend, precision, batch)
                if precision == "fp32":
                    assert row["speedup"] == row["memory ratio"] == "baseline"
                    continue
                if records[0].status != "ok":
                    assert row["speedup"] == row["memory ratio"] == "-"
                    continue
                base = points[("eager", "fp32", batch)]
                # a ratio against a baseline whose measurement is invalid carries a warning (new)
                mark = " ⚠ invalid baseline" if any(r.valid is False for r in base) else ""
                assert row["speedup"] == f"{mean_tps(records) / mean_tps(base):.2f}×{mark}"
                # memory ratio (point / baseline) replaced the memory saving (1 − that) column
                assert row["memory ratio"] == f"{mean_peak(records) / mean_peak(base):.2f}×{mark}"
                checked += 1
    assert checked >= 10


def test_baseline_override(tmp_path):
    files = write_report([ONE_THREAD], tmp_path, ["precision=bf16", "batch_size=1"])
    md = files.markdown.read_text(encoding="utf-8")
    rows = tables_by_heading(md)[f"{SECTION['tiny-gpt2-decode']} / Points"]
    points = points_of(ONE_THREAD, "tiny-gpt2-decode")
    base = points[("eager", "bf16", 1)]
    assert row_of(rows, "eager", "bf16", 1)["speedup"] == "baseline"
    mark = " ⚠ invalid baseline" if any(r.valid is False for r in base) else ""
    for batch in (1, 2, 4):
        fp32 = points[("eager", "fp32", batch)]
        assert row_of(rows, "eager", "fp32", batch)["speedup"] == f"{mean_tps(fp32) / mean_tps(base):.2f}×{mark}"
    assert "**Baseline**: precision bf16, backend eager, batch_size 1." in md


def test_across_runs_ratios(two_runs):
    _, md = two_runs
    rows = tables_by_heading(md)[f"{SECTION['tiny-llama-decode']} / Across runs"]
    first, second = points_of(TWO_THREADS, "tiny-llama-decode"), points_of(ONE_THREAD, "tiny-llama-decode")
    assert len(rows) == len(first) == 4
    for key in first:
        row = row_of(rows, *key)
        assert row["cpu-2threads tokens/s"].split()[0] == f"{mean_tps(first[key]):.1f}"
        assert row["cpu-1thread tokens/s"].split()[0] == f"{mean_tps(second[key]):.1f}"
        ratio = mean_tps(second[key]) / mean_tps(first[key])
        assert row["cpu-1thread speed vs cpu-2threads"] == f"{ratio:.2f}×"
        assert row["cpu-1thread memory vs cpu-2threads"] == f"{mean_peak(second[key]) / mean_peak(first[key]):.2f}×"


# --- files -------------------------------------------------------------------------------------------------


def test_csv_has_one_row_per_record(two_runs):
    files, _ = two_runs
    frame = pd.read_csv(files.csv)
    records = {d.name: read_records(d / "results.jsonl") for d in (TWO_THREADS, ONE_THREAD)}
    assert len(frame) == sum(map(len, records.values()))
    assert frame.groupby("run").size().to_dict() == {k: len(v) for k, v in records.items()}
    by_id = frame.set_index(["run", "run_id"])
    for label, recs in records.items():
        for r in recs:
            row = by_id.loc[(label, r.run_id)]
            assert row["status"] == r.status
            if r.metrics is not None:
                assert row["metrics.latency_s.p50"] == pytest.approx(r.metrics.latency_s.p50, rel=1e-12)
                assert row["primary_throughput"] == pytest.approx(r.metrics.output_tokens_per_s, rel=1e-12)
            else:
                assert pd.isna(row["primary_throughput"])
    # raw samples (lists) are left out; `telemetry.samples` is a count (device readings taken), a plain column
    assert not [c for c in frame.columns if "samples" in c and c != "telemetry.samples"]
    for label, recs in records.items():
        for r in recs:
            if r.telemetry is not None:
                assert by_id.loc[(label, r.run_id)]["telemetry.samples"] == r.telemetry.samples


def expected_charts() -> set[str]:
    """Every chart kind per model × task × device (both runs in one chart set), and the roofline where a record
    carries a ceiling with a memory bandwidth (a calibration stored when it ran; the tests' cache is empty)."""
    expected = set()
    for scenario in MEASURED:
        records = [
            r
            for run_dir in (TWO_THREADS, ONE_THREAD)
            for rs in points_of(run_dir, scenario).values()
            for r in rs
            if r.status == "ok"
        ]
        roofline = any(
            r.roofline is not None
            and r.roofline.phases
            and any(c.memory_bytes_per_s for c in r.roofline.ceilings.values())
            for r in records
        )
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", SECTION[scenario]).strip("_")
        expected |= {(stem, kind) for kind in CHART_KINDS + (("roofline",) if roofline else ())}
    return expected


def chart_kinds(names) -> set[tuple[str, str]]:
    """(section stem, kind) of chart file names STEM-HASH--KIND.png"""
    return {(name.split("--")[0].rsplit("-", 1)[0], name.split("--")[1][: -len(".png")]) for name in names}


def test_charts_are_valid_pngs(two_runs):
    files, md = two_runs
    expected = expected_charts()
    found = {p.name for p in (files.out_dir / "charts").glob("*.png")}
    assert chart_kinds(found) == expected and len(found) == len(expected)
    assert {p.name for p in files.charts} == found
    for path in files.charts:
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        pixels = mpimg.imread(path)
        assert pixels.shape[0] > 200 and pixels.shape[1] > 300, path.name
        assert pixels[..., :3].std() > 0.05, f"{path.name} is blank"
        assert f"](charts/{path.name})" in md


def test_html_is_self_contained(two_runs):
    files, _ = two_runs
    html = files.html.read_text(encoding="utf-8")
    assert html.count('src="data:image/png;base64,') == len(files.charts) == len(expected_charts())
    assert 'src="charts/' not in html
    assert html.count("<table") == len(tables_by_heading(files.markdown.read_text(encoding="utf-8")))


def test_html_tables_carry_the_markdown_numbers(two_runs):
    files, md = two_runs
    html_rows = [
        [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", tr)]
        for tr in re.findall(r"<tr>(.*?)</tr>", files.html.read_text(encoding="utf-8"))
    ]
    md_rows = [list(row.values()) for rows in tables_by_heading(md).values() for row in rows]
    assert len(md_rows) > 60
    for row in md_rows:
        # the markdown clips a long note; every other cell is the same text
        assert any(h[:-1] == row[:-1] and (h[-1] == row[-1] or row[-1].endswith("…")) for h in html_rows), row


def test_a_fidelity_metric_gets_its_column_and_chart(tmp_path):
    """The fixtures predate fidelity. Records that carry it get the column and the fidelity-vs-speedup
    chart. The values below are test inputs in the record schema, nothing the report would make up."""
    records = read_records(ONE_THREAD / "results.jsonl")
    fidelity = {}
    for i, r in enumerate(records):
        if r.metrics is not None and r.scenario == "tiny-gpt2-decode":
            fidelity[r.run_id] = 1 - i / 100
            r.fidelity = Fidelity(
                reference="eager fp32",
                output="logits",
                cosine_mean=fidelity[r.run_id],
                cosine_min=fidelity[r.run_id],
                max_abs_error=0.1,
                max_rel_error=0.01,
            )
    points = [p for p in group_points(records) if p.key.scenario == "tiny-gpt2-decode"]
    table = points_table(points, Baselines(points, dict(DEFAULT_BASELINE)))
    assert "fidelity (cosine)" in table.columns and "1 − cosine" in table.columns
    rows = [dict(zip(table.columns, row)) for row in table.rows]
    for p, row in zip(sort_points(points), rows):
        # more digits than before (.4g printed int8's 0.9999996 as 1), and 1 − cosine in scientific notation
        assert row["fidelity (cosine)"] == (f"{fidelity[p.first.run_id]:.9g}" if p.status == "ok" else "-")
        gap = 1 - fidelity[p.first.run_id] if p.status == "ok" else None
        assert row["1 − cosine"] == ("-" if gap is None else "0" if gap <= 0 else f"{gap:.1e}")
    group = ChartGroup("tiny-gpt2", points, Baselines(points, dict(DEFAULT_BASELINE)))
    charts = {c.kind: c for c in draw_all(group, tmp_path)}
    assert charts["fidelity-vs-speedup"].path is not None
    assert charts["fidelity-vs-speedup"].path.read_bytes()[:8] == PNG_SIGNATURE


def dense_fidelity_sweep() -> tuple[list, dict[tuple[str, str, int], tuple[float, float]]]:
    """A dense synthetic sweep in the record schema: for each of 12 batch sizes an fp32 eager baseline (exact) and
    fp16 / bf16 / int8 points on eager and compile, with speedups 1.00–1.70 and 1 − cosine 1e-7 … 1e-3 (seeded),
    many of them close together. Returns the records and each non-baseline point's (speedup, 1 − cosine)."""
    template = next(
        r for r in read_records(ONE_THREAD / "results.jsonl") if r.status == "ok" and r.scenario == "tiny-gpt2-decode"
    )
    rng = np.random.default_rng(7)
    records, truth = [], {}
    for batch in range(1, 13):
        for backend, precision in [("eager", "fp32")] + [
            (b, p) for b in ("eager", "compile") for p in ("fp16", "bf16", "int8")
        ]:
            base = (backend, precision) == ("eager", "fp32")
            speed = 1.0 if base else float(rng.uniform(1.0, 1.7))
            gap = 0.0 if base else float(10 ** rng.uniform(-7, -3))
            r = template.model_copy(deep=True)
            r.backend, r.precision, r.batch_size = backend, precision, batch
            r.run_id = r.point_id = f"{backend}-{precision}-{batch}"
            r.valid, r.invalid_reasons = True, []
            r.metrics.output_tokens_per_s = 100.0 * speed
            r.fidelity = Fidelity(
                reference="eager fp32",
                output="logits",
                cosine_mean=1 - gap,
                cosine_min=1 - gap,
                max_abs_error=0.0,
                max_rel_error=0.0,
            )
            records.append(r)
            if not base:
                truth[(backend, precision, batch)] = (speed, 1 - r.fidelity.cosine_mean)  # as the record holds it
    return records, truth


def test_fidelity_chart_labels_do_not_overlap_on_a_dense_sweep():
    """Labels name only the points no other point beats on both speedup and fidelity (worked out here from the
    inputs); their text boxes, as matplotlib's renderer lays them out, overlap no other label and stay inside
    the axes; every such point is labelled or counted as left out in the caption."""
    from matplotlib.text import Text

    from bench.report.charts import fidelity_chart

    records, truth = dense_fidelity_sweep()
    points = group_points(records)
    fig, caption = fidelity_chart(ChartGroup("dense", points, Baselines(points, dict(DEFAULT_BASELINE))))
    ax = fig.axes[0]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    labels = [t for t in ax.texts if t.get_text()]
    boxes = []
    for t in labels:
        t.get_window_extent(renderer)
        boxes.append(Text.get_window_extent(t, renderer))  # the text alone, without its leader line
    for i, a in enumerate(boxes):
        assert frame.x0 <= a.x0 and a.x1 <= frame.x1 and frame.y0 <= a.y0 and a.y1 <= frame.y1, labels[i].get_text()
        for j in range(i):
            assert not a.overlaps(boxes[j]), (labels[i].get_text(), labels[j].get_text())
    # the front by hand, the fp32 eager baselines (1×, exact) included: one shared label for the twelve of them
    everything = list(truth.values()) + [(1.0, 0.0)]
    front = {
        key
        for key, (s, v) in truth.items()
        if not any(s2 >= s and v2 <= v and (s2 > s or v2 < v) for s2, v2 in everything)
    }
    assert len(front) >= 5 and len(labels) >= 5  # dense enough for overlaps to be possible
    labelled, baselines_labelled = set(), 0
    for t in labels:
        x, y = t.xy
        near = [k for k in front if abs(truth[k][0] - x) < 1e-9 * x and abs(truth[k][1] - y) < 1e-6 * y]
        if not near:  # the baselines' label, at 1× on the floor line
            assert x == pytest.approx(1.0) and t.get_text() == "12 batch sizes 0"
            baselines_labelled += 1
            continue
        (key,) = near
        assert t.get_text() == f"bs{key[2]} {truth[key][1]:.1e}"
        labelled.add(key)
    left_out = int(m.group(1)) if (m := re.search(r"; (\d+) of them unlabelled", caption)) else 0
    assert len(labelled) + baselines_labelled + left_out == len(front) + 1, caption  # + the baselines' label
    assert left_out <= len(front) // 2, caption


def test_default_out_dir_and_stale_charts(tmp_path):
    run = tmp_path / "sweep"
    shutil.copytree(ONE_THREAD, run)
    stale = run / "report" / "charts" / "old.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(PNG_SIGNATURE)
    proc = run_cli("report", str(run))
    assert proc.returncode == 0, proc.stderr
    assert (run / "report" / "report.md").is_file() and (run / "report" / "report.html").is_file()
    assert (run / "report" / "results.csv").is_file() and not stale.exists()
    assert f"wrote {run / 'report' / 'report.md'}" in proc.stdout


# --- bad input ---------------------------------------------------------------------------------------------

BAD = {
    "baseline-without-equals": (["--baseline", "precision"], "--baseline: 'precision' is not KEY=VALUE"),
    "baseline-unknown-key": (["--baseline", "colour=red"], "--baseline: colour: unknown key"),
    "baseline-absent-value": (["--baseline", "precision=fp64"], "--baseline: precision: no record has precision"),
    "baseline-bad-batch": (["--baseline", "batch_size=two"], "--baseline: batch_size: 'two' is not a positive"),
    "baseline-twice": (
        ["--baseline", "backend=eager", "--baseline", "backend=eager"],
        "--baseline: backend: given twice",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_baseline_exits_2(case, tmp_path):
    args, words = BAD[case]
    proc = run_cli("report", str(ONE_THREAD), "--out", str(tmp_path / "out"), *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == [lines[0]] and lines[0].startswith(f"error: {words}"), proc.stderr
    assert not (tmp_path / "out").exists()


def test_bad_run_dirs_exit_2(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for path, words in ((tmp_path / "absent", "no such run directory"), (empty, "holds no results.jsonl")):
        proc = run_cli("report", str(path), "--out", str(tmp_path / "out"))
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"error: {path}: {words}"), proc.stderr
    (empty / "results.jsonl").write_text("not json\n")  # a malformed line is named, never dropped
    with pytest.raises(BenchInputError, match=r"results.jsonl: line 1 is not a valid record"):
        write_report([empty], tmp_path / "out")


# --- roofline efficiency: the calibration of the machine that ran ----------------------------------------

RUN_TIMEOUT_S = 240


def calibration(name: str, threads: int, bytes_per_s: float):
    """A stored CPU calibration with the given copy bandwidth (matmul peaks far above: decode stays memory-bound)."""
    from bench.roofline import calibrate

    bw = calibrate.BandwidthResult(
        method="copy",
        buffer_bytes=1,
        bytes_per_call=2,
        best_bytes_per_s=bytes_per_s,
        median_bytes_per_s=bytes_per_s,
        calls=3,
    )
    mm = {
        d: calibrate.MatmulResult(dtype=d, size=256, best_flops_per_s=1e12, median_flops_per_s=1e12, calls=3)
        for d in ("fp32", "fp16", "bf16", "int8")
    }
    return calibrate.Calibration(
        device_type="cpu",
        device_name=name,
        threads=threads,
        quick=False,
        measured_at="2026-12-01T00:00:00+00:00",
        seconds=1,
        environment={},
        copy_bandwidth=bw,
        matmul=mm,
    )


@covering(RUN_TIMEOUT_S)
def test_efficiency_uses_only_the_calibration_each_run_stored(tmp_path, monkeypatch):
    """Run A ran where the store held a 10 GB/s calibration; run B (the 1-thread fixture) ran where there was
    none. The report is built where the store holds 1 GB/s for both machines' identities: A's efficiency is
    its own calibration's (hand-computed below), B has none, and the report says why once, for B alone."""
    from bench.environment import cpu_model
    from bench.report.tables import fmt_percent
    from bench.roofline import calibrate

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache-of-the-machine-that-ran"))
    calibrate.save(calibration(cpu_model(), 1, 10e9))
    scenario = tmp_path / "decode.yaml"
    scenario.write_text(
        "name: calibrated-decode\ntask: text-generation\nmodel: {name: tiny-gpt2}\ndevice: cpu\n"
        "matrix: {backend: [eager], precision: [fp32], batch_size: [1]}\n"
        "workload: {prompt_tokens: 16, new_tokens: 4}\n"
        "measure: {warmup: 1, min_iterations: 3, min_time_s: 0, timeout_s: 180, max_cv: 10.0}\n"
    )
    ran = tmp_path / "calibrated"
    proc = run_cli("run", str(scenario), "--out", str(ran), "--no-fidelity", timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (record,) = read_records(ran / "results.jsonl")
    assert record.details["torch_threads"] == 1

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache-of-the-machine-building-the-report"))
    for name in {cpu_model(), "AMD EPYC"}:  # the fixture ran on an 'AMD EPYC' with 1 thread
        calibrate.save(calibration(name, 1, 1e9))
    md = write_report([ran, ONE_THREAD], tmp_path / "report").markdown.read_text(encoding="utf-8")

    # tiny-gpt2 fp32 decode, batch 1, prompt 16, 4 new: every weight but the position table, and the KV cache of
    # 16 + 4/2 = 18 positions (2 layers × K and V × 4 heads × 16 dims × fp32). 0.5 FLOP/byte: memory-bound.
    decode_bytes = (198_400 - 512 * 64) * 4 + 2 * 2 * 4 * 16 * 18 * 4
    expected = decode_bytes / record.metrics.tpot_s.p50 / 10e9
    details = [
        t for heading, t in tables_by_heading(md).items() if heading.endswith("/ Details") and "tiny-gpt2" in heading
    ]
    (rows,) = details
    assert row_of(rows, "eager", "fp32", 1, run="calibrated")["efficiency"] == fmt_percent(expected)
    fixture_rows = of_run(rows, ONE_THREAD.name)
    assert fixture_rows and all(r["efficiency"] == "-" for r in fixture_rows)

    measured = [
        r
        for r in read_records(ONE_THREAD / "results.jsonl")
        if r.status == "ok" and r.roofline is not None and r.roofline.phases
    ]
    runs = md.split("\n## Runs\n")[1].split("\n## ")[0]
    why = [line for line in runs.splitlines() if "no calibrated efficiency for" in line]
    assert why == [
        f"- `{ONE_THREAD.name}`: no calibrated efficiency for {len(measured)} of {len(measured)} measured records: "
        "the run stored no calibration for AMD EPYC with 1 torch threads (run `bench calibrate` on the machine that "
        "runs the sweep, before `bench run`). A report never uses the calibration of the machine building it."
    ]
    assert md.count("no calibrated efficiency for") == 1  # once per run, not per record or section


# --- the HTML in a browser ---------------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_TIMEOUT_S = 120  # one headless run


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium, which `make test` installs first (Makefile: test-deps); skipped with why when absent."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed: `make test-deps` installs it (apt-get, as root)")
    return CHROMIUM


def _chromium(binary: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ]
    return subprocess.run([str(binary), *flags, *args], capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S)


@covering(CHROMIUM_TIMEOUT_S, CHROMIUM_TIMEOUT_S)  # two chromium runs on top of the report
def test_html_renders_in_headless_chromium(two_runs, chromium, tmp_path):
    files, _ = two_runs
    url = files.html.resolve().as_uri()
    shot = tmp_path / "page.png"
    proc = _chromium(chromium, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1400,1800", url)
    assert shot.is_file(), proc.stderr[-2000:]
    pixels = mpimg.imread(shot)
    assert pixels.shape[:2] == (1800, 1400)
    assert pixels[..., :3].std() > 0.05, "the screenshot is blank"

    proc = _chromium(chromium, tmp_path / "profile-dom", "--dump-dom", url)
    dom = proc.stdout
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Benchmark report" in dom and dom.count("<table") >= 10
    assert "<th>tokens/s</th>" in dom and "ok ⚠" in dom and "unsupported" in dom
    assert dom.count('src="data:image/png;base64,') == len(files.charts)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("width,height", [(1400, 900), (390, 844)])
def test_html_verdict_card_is_on_the_first_screen(two_runs, chromium, tmp_path, width, height):
    """The page's own script writes the first verdict card's bounding box into the DOM (data-card-box):
    it must start on the first screen and fit its width; the page logs nothing to the console (no error)."""
    files, _ = two_runs
    url = files.html.resolve().as_uri()
    proc = _chromium(
        chromium,
        tmp_path / "profile",
        "--enable-logging=stderr",
        "--v=0",
        f"--window-size={width},{height}",
        "--dump-dom",
        url,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln]
    assert console == [], console
    box = re.search(r'data-card-box="([-0-9,]+)"', proc.stdout)
    assert box, "the page's script did not run"
    left, top, card_width, card_height, view_width, view_height = map(int, box.group(1).split(","))
    assert 0 <= left and left + card_width <= view_width, box.group(1)  # no sideways scrolling to read it
    assert 0 <= top < view_height / 2, box.group(1)  # it starts in the upper half of the first screen
    ids = re.findall(r' id="([^"]+)"', proc.stdout)
    assert len(ids) == len(set(ids)) and len(ids) > 10
    assert '<meta name="viewport"' in proc.stdout and '<nav class="toc">' in proc.stdout
    assert set(re.findall(r'href="#([^"]+)"', proc.stdout)) <= set(ids)  # every contents link has its target
    shot = tmp_path / "first-screen.png"
    _chromium(chromium, tmp_path / "profile-shot", f"--screenshot={shot}", f"--window-size={width},{height}", url)
    assert mpimg.imread(shot)[..., :3].std() > 0.05


# Cells as the tables print them, read back independently of the page's script: a number, then a unit of
# time, binary bytes, or a decimal prefix before FLOP/s, B/s, B, OP/s (bench.report.tables.fmt_si).
UNITS = {"": 1.0, "×": 1.0, "%": 0.01, **SECONDS, **BYTES, "TiB": 2**40}
SI = {"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}


def cell_number(cell: str) -> float | None:
    """The value of a printed cell, or None for "-" (no value)."""
    if cell == "-":
        return None
    m = re.fullmatch(r"([+-]?\d+(?:\.\d+)?(?:e[+-]\d+)?)\s*(\S*)", cell)
    assert m, f"not a number with a unit: {cell!r}"
    number, unit = float(m.group(1)), m.group(2)
    if unit in UNITS:
        return number * UNITS[unit]
    assert unit[0] in SI and unit[1:] in ("FLOP/s", "B/s", "B", "FLOP", "OP/s"), cell
    return number * SI[unit[0]]


def html_tables(page: str) -> list[tuple[list[str], list[list[str]]]]:
    """(header, rows of cell texts) of every sortable table, in page order."""
    out = []
    for head, body in re.findall(r'<table class="sortable"><thead><tr>(.*?)</tr></thead><tbody>(.*?)</tbody>', page):
        header = [html.unescape(h) for h in re.findall(r"<th>(.*?)</th>", head)]
        rows = [
            [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", tr)]
            for tr in re.findall(r"<tr>(.*?)</tr>", body)
        ]
        out.append((header, rows))
    return out


# Appended after the page's own script in a copy of the page: clicks each chosen header twice (ascending, then
# descending) and writes the rows' texts after each click into the DOM, which --dump-dom returns.
SORT_PROBE = """<script>
(function () {
  var out = [];
  %s.forEach(function (pick) {
    var table = document.querySelectorAll("table.sortable")[pick[0]], th = table.tHead.rows[0].cells[pick[1]];
    [0, 1].forEach(function () {
      th.click();
      out.push({order: th.getAttribute("aria-sort"), rows: Array.prototype.map.call(table.tBodies[0].rows,
        function (tr) { return Array.prototype.map.call(tr.cells, function (td) { return td.textContent; }); })});
    });
  });
  document.body.setAttribute("data-sorted", JSON.stringify(out));
})();
</script>"""


@covering(CHROMIUM_TIMEOUT_S)
def test_html_tables_sort_numerically_by_a_click(two_runs, chromium, tmp_path):
    """A click on a header sorts the rows by that column's values (units and prefixes read as numbers, "-"
    last), a second click reverses them; checked in headless Chromium against a sort done here."""
    import json

    files, _ = two_runs
    page = files.html.read_text(encoding="utf-8")
    tables = html_tables(page)
    picks = []  # (table index, column index, header)
    for header in ("tokens/s", "TTFT p50", "whole-life peak", "achieved bytes/s", "achieved FLOP/s"):
        t = next(i for i, (head, rows) in enumerate(tables) if header in head and len(rows) > 3)
        picks.append((t, tables[t][0].index(header), header))
    probe = tmp_path / "report.html"
    probe.write_text(page.replace("</body>", SORT_PROBE % json.dumps([p[:2] for p in picks]) + "</body>"))
    proc = _chromium(chromium, tmp_path / "profile", "--dump-dom", probe.resolve().as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r'data-sorted="([^"]*)"', proc.stdout)
    assert found, "the probe script did not run"
    sorted_states = json.loads(html.unescape(found.group(1)))
    assert len(sorted_states) == 2 * len(picks)

    lexical_differs = False
    for n, (t, col, header) in enumerate(picks):
        original = tables[t][1]
        values = [cell_number(row[col]) for row in original]
        measured = sorted(v for v in values if v is not None)
        missing = len(values) - len(measured)
        for state, order, expected in (
            (sorted_states[2 * n], "ascending", measured),
            (sorted_states[2 * n + 1], "descending", measured[::-1]),
        ):
            assert state["order"] == order
            assert sorted(map(tuple, state["rows"])) == sorted(map(tuple, original)), header  # rows kept whole
            got = [cell_number(row[col]) for row in state["rows"]]
            assert got == expected + [None] * missing, (header, order, [row[col] for row in state["rows"]])
        cells = [row[col] for row in original if row[col] != "-"]
        lexical_differs |= [cell_number(c) for c in sorted(cells)] != measured
    assert lexical_differs, "every chosen column sorts the same as text: the check would not catch a text sort"
