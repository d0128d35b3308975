"""results.jsonl integrity: complete lines only, malformed lines named by every reader, truncated tails moved
aside, a write that fails part-way leaves the file as it was, one sweep per directory (flock)."""

import os
import resource
import shutil
import signal
import subprocess
import sys

import pytest

from bench import store
from bench.errors import BenchInputError
from bench.results import read_records

from conftest import REPO, run_cli

FIXTURE = REPO / "tests" / "fixtures" / "cpu-1thread"


@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / "run"
    shutil.copytree(FIXTURE, d)
    return d


def lines_of(path):
    return path.read_bytes().split(b"\n")


def test_append_writes_complete_lines_read_back_unchanged(tmp_path, run_dir):
    records = read_records(run_dir / "results.jsonl")
    out = tmp_path / "new.jsonl"
    store.append_records(out, records[:2])
    store.append_record(out, records[2])
    data = out.read_bytes()
    assert data.endswith(b"\n") and data.count(b"\n") == 3
    assert [r.model_dump() for r in read_records(out)] == [r.model_dump() for r in records[:3]]


def test_malformed_middle_line_is_named_with_file_and_line(run_dir):
    path = run_dir / "results.jsonl"
    lines = lines_of(path)
    lines.insert(2, b'{"schema_version": 1, "run_id": "x"}')  # valid JSON, not a record: becomes line 3
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(store.MalformedRecords) as exc:
        read_records(path)
    assert exc.value.line == 3 and str(path) in str(exc.value) and "line 3" in str(exc.value)


def test_truncated_tail_is_refused_then_moved_aside_with_its_run(tmp_path, run_dir):
    path = run_dir / "results.jsonl"
    records = read_records(path)
    n = len(records)
    whole = path.read_bytes()
    last = records[-1].model_dump_json().encode()
    path.write_bytes(whole + last[: len(last) // 2])  # a kill in the middle of writing record n + 1
    with pytest.raises(store.MalformedRecords) as exc:
        read_records(path)
    assert exc.value.line == n + 1 and "cut short" in str(exc.value)
    side, moved = store.move_tail_aside(path)
    # the cut line and the complete line of the same run (a run's records go together) are both in the side file
    assert moved == 2 and side.read_bytes() == whole.split(b"\n")[n - 1] + b"\n" + last[: len(last) // 2] + b"\n"
    assert [r.run_id for r in read_records(path)] == [r.run_id for r in records[:-1]]
    assert path.read_bytes() == b"\n".join(whole.split(b"\n")[: n - 1]) + b"\n"


@pytest.mark.parametrize("command", ["report", "compare", "export", "baseline"])
def test_every_reader_names_the_malformed_line(tmp_path, run_dir, command):
    path = run_dir / "results.jsonl"
    lines = lines_of(path)
    lines[1] = lines[1][:40]  # a complete line that is not a record: line 2
    path.write_bytes(b"\n".join(lines))
    args = {
        "report": ["report", str(run_dir), "--out", str(tmp_path / "rep")],
        "compare": ["compare", str(FIXTURE), str(run_dir)],
        "export": ["export", str(run_dir)],
        "baseline": ["baseline", "save", str(run_dir), "b", "--dir", str(tmp_path / "bl")],
    }[command]
    proc = run_cli(*args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{path}: line 2 is not a valid record" in proc.stderr


def _append_under_limit(path, extra_bytes):
    code = (
        "import sys; from bench import store; from bench.results import read_records;"
        "r = read_records(__import__('pathlib').Path(sys.argv[2]))[0]\n"
        "try:\n store.append_records(__import__('pathlib').Path(sys.argv[1]), [r, r])\n"
        "except store.RecordWriteError as e:\n print(e); sys.exit(1)"
    )
    limit = path.stat().st_size + extra_bytes

    def preexec():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        [sys.executable, "-c", code, str(path), str(FIXTURE / "results.jsonl")],
        cwd=REPO,
        capture_output=True,
        text=True,
        preexec_fn=preexec,
        timeout=120,
    )


def test_write_failing_part_way_leaves_file_as_it_was(run_dir):
    path = run_dir / "results.jsonl"
    before = path.read_bytes()
    proc = _append_under_limit(path, 100)  # room for 100 bytes of two records of several KB
    assert proc.returncode == 1, proc.stderr
    assert "cannot write a record" in proc.stdout and "File too large" in proc.stdout
    assert path.read_bytes() == before


def test_move_aside_keeps_what_it_takes(run_dir):
    path = run_dir / "results.jsonl"
    records = read_records(path)
    take = {records[0].run_id, records[3].run_id}
    side, moved = store.move_aside(path, take, "retried")
    assert moved == sum(r.run_id in take for r in records)
    assert {r.run_id for r in read_records(side)} == take
    assert [r.run_id for r in read_records(path)] == [r.run_id for r in records if r.run_id not in take]


def test_lock_names_the_holder_and_dies_with_it(tmp_path):
    d = tmp_path / "out"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; "
            "from bench.store import sweep_lock\nwith sweep_lock(Path(sys.argv[1])):\n"
            " print('held', flush=True); time.sleep(600)",
            str(d),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(BenchInputError) as exc, store.sweep_lock(d):
            pass
        assert f"pid {holder.pid}" in str(exc.value) and str(d) in str(exc.value)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (d / ".lock").exists()  # a stale lock file left behind by a killed sweep ...
    with store.sweep_lock(d):  # ... does not block the next one
        assert (d / ".lock").read_text().strip() == str(os.getpid())


class SeveralRecords:
    """An executor (bench.executors protocol) whose worker gives several records per run, as a serving load
    test does: one per load level."""

    def __init__(self, levels=3):
        self.levels, self.jobs = levels, []

    def run(self, job):
        from bench.records import failed_record

        self.jobs.append(job.spec.run_id)
        return [failed_record(job.spec, "unsupported", f"level {i}") for i in range(self.levels)]

    def reference(self, job, out):
        raise AssertionError("fidelity is off")


def test_a_run_with_several_records_appends_each_once_and_resumes_as_done(tmp_path):
    from bench.scenario import load_all
    from bench.sweep import run_sweep

    from conftest import tiny_scenario

    scenarios = load_all([tiny_scenario(tmp_path / "s.yaml", batch="[1, 2]")])
    fake = SeveralRecords()
    run_sweep(scenarios, tmp_path / "out", fidelity=False, executor=fake)
    records = read_records(tmp_path / "out" / "results.jsonl")
    assert len(fake.jobs) == 2 and len(records) == 6
    assert [r.error for r in records] == ["level 0", "level 1", "level 2"] * 2
    again = SeveralRecords()
    result = run_sweep(scenarios, tmp_path / "out", fidelity=False, resume=True, executor=again)
    assert again.jobs == [] and result.skipped == 2
    assert len(read_records(tmp_path / "out" / "results.jsonl")) == 6


@pytest.mark.parametrize("shape", ["list", "object"])
def test_hand_off_file_is_a_list_or_one_record_from_older_checkouts(tmp_path, shape):
    from bench.executors.local import read_handoff

    records = read_records(FIXTURE / "results.jsonl")[:2]
    path = tmp_path / "result.json"
    if shape == "list":
        path.write_text("[" + ",".join(r.model_dump_json() for r in records) + "]")
        assert [r.run_id for r in read_handoff(path)] == [r.run_id for r in records]
    else:
        path.write_text(records[0].model_dump_json(indent=2))
        assert [r.run_id for r in read_handoff(path)] == [records[0].run_id]
