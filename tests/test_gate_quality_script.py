"""scripts/gate_quality.py's comparison of the first N repeats of a group (`--compare-repeats`): the gate must
see exactly what a run with N repeats would have given it. Synthetic records (tests/gate_synth.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from bench.gate.compare import compare, load_side
from bench.gate.config import GateConfig

from gate_synth import run_of_points, write_run

REPO = Path(__file__).resolve().parents[1]
POINTS = [{"batch": 1}, {"batch": 2, "base": 0.03}, {"batch": 4, "base": 0.05}]


def script():
    spec = importlib.util.spec_from_file_location("gate_quality", REPO / "scripts" / "gate_quality.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gate_quality"] = module
    spec.loader.exec_module(module)
    return module


def test_first_repeats_are_what_a_shorter_run_gives(tmp_path):
    gq = script()
    base = run_of_points(POINTS, 5, 0.04, 0.05, 40, seed=3)
    cur = run_of_points(POINTS, 5, 0.04, 0.05, 40, seed=4, factor=1.3)
    groups = tmp_path / "groups"
    write_run(groups / "a", base)
    write_run(groups / "s", cur)
    # The oracle: run directories holding only repeats 0..2, written independently of the script's filter.
    write_run(tmp_path / "a3", [r for r in base if r.repeat in (0, 1, 2)])
    write_run(tmp_path / "s3", [r for r in cur if r.repeat in (0, 1, 2)])

    side = gq.side_of(groups / "a", 3)
    assert sorted((r.batch_size, r.repeat) for r in side.records) == [(b, r) for b in (1, 2, 4) for r in range(3)]
    config = GateConfig()
    got = gq.gate(tmp_path, config, "a", "s", first=3)
    want = compare(load_side(str(tmp_path / "a3")), load_side(str(tmp_path / "s3")), config)
    assert got.exit_code == want.exit_code
    assert [(c.key, c.metric.name, c.verdict, c.repeats, c.interval) for c in got.comparisons] == [
        (c.key, c.metric.name, c.verdict, c.repeats, c.interval) for c in want.comparisons
    ]
    assert {c.repeats for c in got.comparisons if c.metric.name == "latency_s"} == {(3, 3)}
    # All five repeats: a different comparison (the filter is not a no-op).
    full = gq.gate(tmp_path, config, "a", "s")
    assert {c.repeats for c in full.comparisons if c.metric.name == "latency_s"} == {(5, 5)}


def test_session_noise_figures_read_the_gates_side_statistic(tmp_path):
    """The script's session-noise figures come from the gate's A/A comparisons: the spread of the sides' latency
    statistic is that of the pooled p10 of each group's batch-1 calls (computed here with numpy), and the
    calibrated value is there (its known-answer tests: tests/test_gate_pooled.py)."""
    import math
    import statistics

    import numpy as np

    gq = script()
    gq.BATCHES[:] = [1, 2, 4]
    groups = tmp_path / "groups"
    runs = [
        run_of_points(POINTS, 3, 0.04, 0.05, 40, seed=10 + i, factor=float(f))
        for i, f in enumerate((1, 1.05, 0.97, 1.02))
    ]
    for i, records in enumerate(runs):
        write_run(groups / f"a-{i:02d}", records)
    aa = [gq.gate(tmp_path, GateConfig(), f"a-{i:02d}", f"a-{i + 1:02d}") for i in range(3)]
    est = gq.session_noise(aa, aa)
    p10 = [
        math.log(np.quantile(np.concatenate([r.metrics.latency_s.samples for r in recs if r.batch_size == 1]), 0.1))
        for recs in runs
    ]
    assert est["groups"] == 4
    assert est["group_statistic_sd"] == statistics.stdev(p10)
    # Run order, against the median of the four (hand: the median of four is the mean of the middle two).
    mid = sum(sorted(p10)[1:3]) / 2
    assert est["group_statistic_trail"] == pytest.approx([math.exp(v - mid) - 1 for v in p10], abs=1e-12)
    assert "In run order (a-00, a-01, …)" in gq._session_line(est)
    assert est["session_sd"] is not None and est["estimates"] == 3 * 3 * 3  # comparisons × points × time metrics
    assert est["z_sd_calibrated"] is not None


def test_aa_spread_is_the_sd_of_the_log_ratios(tmp_path):
    """aa_spread: per batch size, the sample sd of the A/A comparisons' latency log ratios, each log ratio
    recomputed here from the gate's two side values."""
    import math
    import statistics

    gq = script()
    groups = tmp_path / "groups"
    for i in range(4):
        write_run(groups / f"a-{i:02d}", run_of_points(POINTS, 3, 0.04, 0.05, 40, seed=20 + i))
    aa = [gq.gate(tmp_path, GateConfig(), f"a-{i:02d}", f"a-{i + 1:02d}") for i in range(3)]
    spread = gq.aa_spread(aa)
    assert sorted(spread) == ["1", "2", "4"]
    for b, got in spread.items():
        lr = [
            math.log(c.current_value / c.baseline_value)
            for r in aa
            for c in r.comparisons
            if c.metric.name == "latency_s" and c.key.batch_size == int(b)
        ]
        assert got["comparisons"] == 3
        assert math.isclose(got["log_ratio_sd"], statistics.stdev(lr), rel_tol=1e-12)
