"""Baselines, pytest-benchmark export, the test-only slowdown knob, and one real tiny sweep through the gate."""

from __future__ import annotations

import json
import os
import time

import pytest
import yaml

from bench import inject
from bench.results import read_records

from conftest import REPO, run_cli, tiny_scenario
from gate_synth import record, side, write_run

# --- baselines --------------------------------------------------------------------------------------------


def test_baseline_save_list_and_compare_by_name(tmp_path):
    run = write_run(tmp_path / "run", side(seed=1) + [record("synth", 5, [], status="failed")])
    store = tmp_path / "store"
    proc = run_cli("baseline", "save", str(run), "ci-cpu", "--dir", str(store))
    assert proc.returncode == 0, proc.stderr
    saved = store / "ci-cpu"
    assert {p.name for p in saved.iterdir()} == {"results.jsonl", "environment.json", "baseline.json"}
    meta = json.loads((saved / "baseline.json").read_text())
    assert meta["name"] == "ci-cpu" and meta["points"] == 1 and meta["ok_records"] == 5 and meta["records"] == 6
    assert len(read_records(saved / "results.jsonl")) == 6

    again = run_cli("baseline", "save", str(run), "ci-cpu", "--dir", str(store))
    assert again.returncode == 2 and "pass --force" in again.stderr
    assert run_cli("baseline", "save", str(run), "ci-cpu", "--dir", str(store), "--force").returncode == 0

    listed = run_cli("baseline", "list", "--dir", str(store))
    assert listed.returncode == 0 and "ci-cpu" in listed.stdout and "synth" in listed.stdout

    cur = write_run(tmp_path / "cur", side(seed=2, factor=1.3))
    env = dict(os.environ, BENCH_BASELINE_DIR=str(store))
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "bench.cli", "compare", "ci-cpu", str(cur)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
    )
    assert proc.returncode == 1, proc.stderr
    assert "**Baseline** `ci-cpu` (saved baseline" in proc.stdout
    missing = run_cli("compare", "no-such", str(cur), "--baseline-dir", str(store))
    assert missing.returncode == 2 and "(saved: ci-cpu)" in missing.stderr


@pytest.mark.parametrize("name, words", [("bad name", "use letters"), (".hidden", "use letters")])
def test_baseline_bad_name(tmp_path, name, words):
    run = write_run(tmp_path / "run", side(seed=1))
    proc = run_cli("baseline", "save", str(run), name, "--dir", str(tmp_path / "store"))
    assert proc.returncode == 2 and words in proc.stderr


def test_baseline_of_a_run_without_ok_records(tmp_path):
    run = write_run(tmp_path / "run", [record("synth", 0, [], status="failed")])
    proc = run_cli("baseline", "save", str(run), "x", "--dir", str(tmp_path / "store"))
    assert proc.returncode == 2 and "has no ok record" in proc.stderr


def test_baseline_list_empty(tmp_path):
    proc = run_cli("baseline", "list", "--dir", str(tmp_path / "none"))
    assert proc.returncode == 0 and "no saved baselines" in proc.stdout


# --- pytest-benchmark export ------------------------------------------------------------------------------


def test_export_pytest_benchmark(tmp_path):
    recs = side(seed=1, repeats=2, calls=10) + side("other", seed=2, repeats=1, calls=10)
    recs.append(record("broken", 0, [], status="failed"))
    run = write_run(tmp_path / "run", recs)
    out = tmp_path / "pb.json"
    proc = run_cli("export", str(run), "--format", "pytest-benchmark", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "1 point(s) without an ok repeat left out" in proc.stderr
    doc = json.loads(out.read_text())
    assert {"machine_info", "commit_info", "benchmarks", "datetime", "version"} <= set(doc)
    (bm,) = [b for b in doc["benchmarks"] if b["group"] == "synth"]
    assert bm["name"] == "synth[tiny-gpt2-eager-fp32-bs1]" and bm["fullname"].startswith("synth[")
    st = bm["stats"]
    samples = [x for r in recs[:2] for x in r.metrics.latency_s.samples]
    assert st["rounds"] == 20 and st["data"] == samples and st["iterations"] == 1
    assert st["mean"] == pytest.approx(sum(samples) / 20) and st["ops"] == pytest.approx(1 / st["mean"])
    assert st["min"] <= st["q1"] <= st["median"] <= st["q3"] <= st["max"]
    for key in ("stddev", "iqr", "outliers", "ld15iqr", "hd15iqr", "total", "iqr_outliers", "stddev_outliers"):
        assert key in st
    assert bm["extra_info"]["repeats"] == 2 and bm["extra_info"]["output_tokens_per_s"] > 0
    assert bm["params"]["batch_size"] == 1 and doc["commit_info"]["id"] == "0" * 40
    assert run_cli("export", str(run), "--format", "csv").returncode == 2


# --- the test-only slowdown knob --------------------------------------------------------------------------


class FakeModel:
    """generate() that hands over a prompt and 4 tokens, 20 ms apart; __call__ that takes 20 ms."""

    config = "the model's config"

    def generate(self, streamer=None, **kwargs):
        streamer.put("prompt")
        for _ in range(4):
            time.sleep(0.02)
            streamer.put("token")
        time.sleep(0.02)
        streamer.end()
        return "out"

    def __call__(self, x):
        time.sleep(0.02)
        return x


class Marks:
    def __init__(self):
        self.times = []

    def put(self, value):
        self.times.append(time.perf_counter())

    def end(self):
        pass


def _timeline(model):
    marks = Marks()
    t0 = time.perf_counter()
    assert model.generate(streamer=marks, max_new_tokens=4) == "out"
    return [t - t0 for t in marks.times[1:]], time.perf_counter() - t0


def test_slowdown_knob_stretches_every_segment():
    plain_tokens, plain_total = _timeline(FakeModel())
    slowed = inject.Slowed(FakeModel(), 0.5)
    slow_tokens, slow_total = _timeline(slowed)
    assert slowed.config == "the model's config"  # everything else is the runnable's
    for plain, slow in zip(plain_tokens, slow_tokens):  # time to each token, TTFT included
        assert 1.3 < slow / plain < 1.8, (plain_tokens, slow_tokens)
    assert 1.3 < slow_total / plain_total < 1.8
    t0 = time.perf_counter()
    assert slowed(7) == 7
    assert time.perf_counter() - t0 > 0.028


@pytest.mark.parametrize("value, expected", [("", None), ("0", None), ("0.10", 0.10), (" 1 ", 1.0)])
def test_slowdown_knob_values(value, expected):
    assert inject.slowdown_fraction({inject.ENV: value}) == expected


@pytest.mark.parametrize("value", ["ten", "-0.1", "11"])
def test_slowdown_knob_rejects_bad_values(value):
    with pytest.raises(ValueError, match=inject.ENV):
        inject.slowdown_fraction({inject.ENV: value})


def test_knob_off_leaves_the_runnable_alone(monkeypatch):
    from bench.backends.base import Prepared

    monkeypatch.delenv(inject.ENV, raising=False)
    prepared = Prepared(runnable=FakeModel())
    assert inject.maybe_slow_down(prepared) is prepared and isinstance(prepared.runnable, FakeModel)
    assert "injected_slowdown" not in prepared.details


@pytest.mark.serial  # the gate must tell the knob's slowdown from this machine's noise
def test_tiny_sweep_with_the_knob_and_the_gate(tmp_path):
    """A real sweep: the knob reaches the worker and says so in every record and in environment.json; the gate
    runs on real records and warns about the knob."""
    scen = tiny_scenario(tmp_path / "t.yaml", iters=3)
    plain, slowed = tmp_path / "plain", tmp_path / "slowed"
    # no fidelity: the gate compares timings and memory here, and a reference would be two more worker processes
    assert run_cli("run", str(scen), "--out", str(plain), "--no-fidelity").returncode == 0
    env = dict(os.environ, HF_HUB_OFFLINE="1", BENCH_INJECT_SLOWDOWN="0.5")
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "bench.cli", "run", str(scen), "--out", str(slowed), "--repeats", "2", "--no-fidelity"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    records = read_records(slowed / "results.jsonl")
    assert len(records) == 2 and all(r.details["injected_slowdown"] == 0.5 for r in records)
    assert json.loads((slowed / "environment.json").read_text())["env"]["BENCH_INJECT_SLOWDOWN"] == "0.5"
    log = (slowed / "logs" / f"{records[0].run_id}.log").read_text()
    assert "BENCH_INJECT_SLOWDOWN=0.5 is set" in log
    gate = run_cli("compare", str(plain), str(slowed), "--format", "json")
    # one plain repeat: the gate cannot judge a 50% slowdown, and says so (never a silent pass): a warning with
    # the default `inconclusive: auto` (no interval to call it a likely regression), a failure with `fail`
    assert gate.returncode == 0, gate.stderr
    data = json.loads(gate.stdout)
    assert data["outcome"] == "warn: could not judge 1 point(s)" and data["counts"]["not_judged_points"] == 1
    assert gate.stderr.strip().endswith("gate: warn: could not judge 1 point(s)")
    strict = tmp_path / "gate.yaml"
    strict.write_text("inconclusive: fail\n")
    failed = run_cli("compare", str(plain), str(slowed), "--config", str(strict), "--format", "json")
    assert failed.returncode == 1 and json.loads(failed.stdout)["outcome"] == "fail: could not judge 1 point(s)"
    assert any("BENCH_INJECT_SLOWDOWN=0.5" in w for w in data["warnings"])
    by_metric = {c["metric"]: c for c in data["comparisons"]}
    assert {"latency_s", "ttft_s", "output_tokens_per_s", "memory.host_rss_peak_bytes"} <= set(by_metric)
    assert (
        by_metric["latency_s"]["repeats"] == {"baseline": 1, "current": 2}
        or "too noisy" in by_metric["latency_s"]["reason"]
    )
    assert all(c["verdict"] == "inconclusive" for c in data["comparisons"])
    assert read_records(plain / "results.jsonl")[0].details.get("injected_slowdown") is None


# --- CI files ---------------------------------------------------------------------------------------------


def test_perf_workflow_and_gate_config_parse():
    from bench.gate.config import load_config

    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "perf.yml").read_text())
    steps = [s.get("run", "") for s in workflow["jobs"]["perf"]["steps"]]
    assert "self-hosted" in workflow["jobs"]["perf"]["runs-on"]
    assert any("make install GPU=1" in s for s in steps) and any("make bench-ci" in s for s in steps)
    assert any("make bench-ab" in s and "BASE_REF" in s for s in steps)  # pull requests: interleaved with the base
    assert any("GITHUB_STEP_SUMMARY" in s for s in steps)
    config = load_config(REPO / "gate.yaml")
    assert config.threshold == 0.05
    assert run_cli("validate", "scenarios/ci").returncode == 0


def test_make_bench_ab_runs_the_base_in_a_worktree_then_the_paired_gate():
    import subprocess

    proc = subprocess.run(
        ["make", "-n", "bench-ab", "BASE_REF=abc123", "CI_SUITE=scenarios/ci", "CI_OUT=out/x"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "git worktree add --detach .ab/base abc123" in text
    assert "ab scenarios/ci --repeats 8 --baseline-code .ab/base --out out/x" in text
    assert "compare out/x/baseline out/x/current --config gate.yaml --out out/x/gate" in text
