"""Interleaved A/B sweeps (`bench ab`): the order of runs, what each arm's workers get, the records' rounds."""

from __future__ import annotations

import json
import shutil

import pytest

from bench import runner
from bench.errors import BenchInputError
from bench.results import Record, read_records
from bench.scenario import load_all
from bench.worker import base_record

from conftest import REPO, run_cli, tiny_scenario


class FakeExecutor:
    """In place of worker processes (bench.executors protocol): note which arm ran which spec, in order, with
    which environment."""

    def __init__(self):
        self.calls = []

    def run(self, job):
        self.calls.append((job.logs.parent.name, job.spec.repeat, job.env or {}))
        return [Record(**base_record(job.spec, job.spec.device), status="ok")]

    def reference(self, job, out):
        raise AssertionError("fidelity is off")


def test_arms_alternate_round_by_round_and_records_carry_the_round(tmp_path):
    fake = FakeExecutor()
    calls = fake.calls
    scenarios = load_all([str(tiny_scenario(tmp_path / "t.yaml", batch="[1, 2]"))])
    arms = [runner.Arm("baseline"), runner.Arm("current", {"BENCH_INJECT_SLOWDOWN": "0.1"})]
    results = runner.run_interleaved(scenarios, tmp_path / "ab", arms, repeats=3, fidelity=False, seed=1, executor=fake)

    assert len(calls) == 2 * 3 * 2  # points × rounds × arms
    for i in range(0, len(calls), 2):  # each round runs both arms back to back, in either order
        (arm_a, round_a, _), (arm_b, round_b, _) = calls[i], calls[i + 1]
        assert {arm_a, arm_b} == {"baseline", "current"} and round_a == round_b
    assert len({calls[i][0] for i in range(0, len(calls), 2)}) == 2  # the order is shuffled, not fixed
    for arm, _, env in calls:
        assert env.get("BENCH_INJECT_SLOWDOWN") == ("0.1" if arm == "current" else None)

    base = read_records(tmp_path / "ab" / "baseline" / "results.jsonl")
    cur = read_records(tmp_path / "ab" / "current" / "results.jsonl")
    assert len(base) == len(cur) == 6 and len(results["current"].records) == 6
    assert sorted(r.pair for r in base) == sorted(r.pair for r in cur)
    assert len({r.pair.split(":")[0] for r in base + cur}) == 1  # one session
    assert len({r.pair for r in base}) == 6  # a round per point and repeat
    env_cur = json.loads((tmp_path / "ab" / "current" / "environment.json").read_text())
    env_base = json.loads((tmp_path / "ab" / "baseline" / "environment.json").read_text())
    assert env_cur["env"]["BENCH_INJECT_SLOWDOWN"] == "0.1" and "BENCH_INJECT_SLOWDOWN" not in env_base["env"]

    with pytest.raises(BenchInputError, match="not resumed"):
        runner.run_interleaved(scenarios, tmp_path / "ab", arms, repeats=3, fidelity=False, executor=fake)


def test_a_code_arm_imports_bench_from_its_checkout(tmp_path):
    code = tmp_path / "other"
    shutil.copytree(REPO / "bench", code / "bench", ignore=shutil.ignore_patterns("__pycache__"))
    arm = runner.Arm("baseline", code=code)
    runner.check_arm_code(arm)  # the probe: workers started with this environment import the copy
    env = arm.worker_env()
    assert env["PYTHONPATH"].split(":")[0] == str(code.resolve()) and env["PYTHONSAFEPATH"] == "1"
    with pytest.raises(BenchInputError, match="no bench/worker.py"):
        runner.check_arm_code(runner.Arm("baseline", code=tmp_path))


@pytest.mark.parametrize(
    "args, words",
    [
        (["--current-env", "NOEQUALS"], "--current-env: 'NOEQUALS' is not KEY=VALUE"),
        (["--baseline-code", "/nonexistent"], "--baseline-code: /nonexistent has no bench/worker.py"),
        (["--repeats", "1"], "--repeats"),
    ],
)
def test_ab_bad_options_are_one_line_exit_2(tmp_path, args, words):
    scen = tiny_scenario(tmp_path / "t.yaml")
    proc = run_cli("ab", str(scen), "--out", str(tmp_path / "ab"), *args)
    assert proc.returncode == 2 and words in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "ab" / "baseline" / "results.jsonl").exists()


@pytest.mark.serial  # two interleaved rounds: a neighbour's load on one arm outweighs the knob
def test_ab_then_compare_end_to_end(tmp_path):
    """Real workers: the knob on the current arm only, both arms' records in rounds, compared as pairs."""
    scen = tiny_scenario(tmp_path / "t.yaml", iters=10)
    out = tmp_path / "ab"
    proc = run_cli(
        "ab",
        str(scen),
        "--out",
        str(out),
        "--repeats",
        "2",
        "--no-fidelity",
        "--current-env",
        "BENCH_INJECT_SLOWDOWN=0.5",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"bench compare {out / 'baseline'} {out / 'current'}" in proc.stdout.replace("\n", "")
    base, cur = read_records(out / "baseline" / "results.jsonl"), read_records(out / "current" / "results.jsonl")
    assert [r.status for r in base + cur] == ["ok"] * 4
    assert all(r.details.get("injected_slowdown") == 0.5 for r in cur)
    assert not any(r.details.get("injected_slowdown") for r in base)
    assert {r.pair for r in base} == {r.pair for r in cur}
    # 2 rounds give 1 degree of freedom: a 50% slowdown is a regression or, unresolved, a result the gate could
    # not judge; with `inconclusive: fail` either fails the gate, so the exit code has one right answer
    strict = tmp_path / "gate.yaml"
    strict.write_text("inconclusive: fail\n")
    gate = run_cli("compare", str(out / "baseline"), str(out / "current"), "--format", "json", "--config", str(strict))
    assert gate.returncode == 1, gate.stderr
    lat = next(c for c in json.loads(gate.stdout)["comparisons"] if c["metric"] == "latency_s")
    assert lat["paired"] is True and lat["df"] == 1 and lat["ratio"] > 1.2
