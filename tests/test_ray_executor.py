"""The Ray executor on a real Ray cluster of three logical nodes on this machine (ray.cluster_utils.Cluster):
the same sweep as the local executor, resume across executors, GPU requests and placement groups, a node lost
mid-run (retried elsewhere), a failing point (never retried), and the shared-GPU check through a fake NVML.

Worker processes are watched through a sitecustomize on their PYTHONPATH: every `python -m bench.worker` start
is logged (kind, run id, pid), and when a hold file exists the first run to start claims it and waits, so the
test knows which node to remove while that run is in flight.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import threading
import time
import types
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (the optional extra: pip install -e '.[ray]')")

from bench.errors import BenchInputError  # noqa: E402
from bench.executors import Job  # noqa: E402
from bench.results import read_records  # noqa: E402

from conftest import run_cli, tiny_scenario  # noqa: E402

SITECUSTOMIZE = """
import os
_args = [a.decode() for a in open("/proc/self/cmdline", "rb").read().split(b"\\0") if a]
if "bench.worker" in _args and os.environ.get("BENCH_TEST_STARTS"):
    _rest = _args[_args.index("bench.worker") + 1:]
    _kind = "reference" if _rest[:1] == ["--reference"] else "run"
    with open(os.environ["BENCH_TEST_STARTS"], "a") as _f:
        _f.write(f"{_kind} {os.path.basename(_rest[-2]).split('.')[0]} {os.getpid()}\\n")
    _hold = os.environ.get("BENCH_TEST_HOLD")
    if _kind == "run" and _hold:
        try:
            os.rename(_hold, _hold + ".taken")
        except OSError:
            pass
        else:
            import ctypes, signal, time
            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # die with the Ray worker, as bench.worker would
            with open(_hold + ".held", "w") as _f:
                _f.write(str(os.getpid()))
            time.sleep(300)
"""
MB = 2**20
HOOK_VARS = ("PYTHONPATH", "BENCH_TEST_STARTS", "BENCH_TEST_HOLD", "RAY_USAGE_STATS_ENABLED")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from ray.cluster_utils import Cluster

    hooks = tmp_path_factory.mktemp("hooks")
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    saved = {k: os.environ.get(k) for k in HOOK_VARS}
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hooks), os.environ.get("PYTHONPATH")]))
    os.environ["BENCH_TEST_STARTS"] = str(hooks / "starts.txt")
    os.environ["BENCH_TEST_HOLD"] = str(hooks / "hold")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    small = {"object_store_memory": 100 * MB}
    c = Cluster(initialize_head=True, head_node_args=dict(num_cpus=1, include_dashboard=False, **small))
    n1 = c.add_node(num_cpus=1, num_gpus=1, **small)
    n2 = c.add_node(num_cpus=1, num_gpus=2, **small)
    c.wait_for_nodes()
    try:
        yield types.SimpleNamespace(cluster=c, address=c.address, head=c.head_node, n1=n1, n2=n2, hooks=hooks)
    finally:
        ray.shutdown()
        c.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def starts(hooks: Path, run_id: str, kind: str = "run") -> int:
    path = hooks / "starts.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    return sum(1 for line in lines if line.split()[:2] == [kind, run_id])


def scenarios(tmp_path: Path) -> list[str]:
    """tiny-gpt2 at batch 1 (ok) and a model whose config the worker cannot build (failed)."""
    good = tiny_scenario(tmp_path / "tiny.yaml", iters=2)
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    (bad_dir / "config.json").write_text(
        '{"model_type": "gpt2", "n_embd": 30, "n_head": 4, "n_layer": 1, "vocab_size": 100, "n_positions": 64}'
    )
    bad = tiny_scenario(tmp_path / "broken.yaml", name="broken", model="bad", iters=2)
    return [str(good), str(bad)]


def node_ids(c) -> set[str]:
    return {n.node_id for n in c.cluster.list_all_nodes()}


def test_same_sweep_local_and_ray(cluster, tmp_path):
    from bench.executors.local import LocalExecutor
    from bench.executors.ray import RayExecutor
    from bench.scenario import load_all
    from bench.sweep import run_sweep

    paths = scenarios(tmp_path)
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    run_sweep(load_all(paths), local, fidelity=False, executor=LocalExecutor())
    (cluster.hooks / "starts.txt").unlink(missing_ok=True)
    result = run_sweep(load_all(paths), on_ray, fidelity=False, executor=RayExecutor(address=cluster.address))
    assert result.exit_code == 1  # one run failed

    by_local, by_ray = read_records(local / "results.jsonl"), read_records(on_ray / "results.jsonl")
    assert sorted((r.scenario, r.status) for r in by_local) == [("broken", "failed"), ("tiny", "ok")]
    assert {(r.run_id, r.status) for r in by_ray} == {(r.run_id, r.status) for r in by_local}
    for r in by_ray:
        node = r.details["node"]
        assert node["hostname"] == platform.node() and node["ray_node_id"] in node_ids(cluster)
        assert "infra_retries" not in r.details
    failed = next(r for r in by_ray if r.status == "failed")
    assert "embed_dim" in failed.error and str(on_ray / "logs") in failed.error  # the log copied back here
    assert (on_ray / "logs" / f"{failed.run_id}.log").read_text().strip()
    assert starts(cluster.hooks, failed.run_id) == 1  # a failed measurement is not retried
    nodes = json.loads((on_ray / "environment.json").read_text())["nodes"]
    assert set(nodes) == {r.details["node"]["ray_node_id"] for r in by_ray}
    assert all(n["python"] == platform.python_version() for n in nodes.values())

    # --resume across executors: each run directory is complete for the other executor
    for src, executor in ((on_ray, LocalExecutor()), (local, RayExecutor(address=cluster.address))):
        again = tmp_path / f"resume-{src.name}"
        again.mkdir()
        shutil.copy(src / "results.jsonl", again / "results.jsonl")
        result = run_sweep(load_all(paths), again, resume=True, fidelity=False, executor=executor)
        assert (result.skipped, result.records) == (2, [])


def test_cli_refuses_ray_options_without_ray_and_unknown_executors(tmp_path):
    scenario = scenarios(tmp_path)[0]
    for args, words in (
        (("--address", "127.0.0.1:6379"), "--address: names a Ray cluster"),
        (("--executor", "slurm"), "--executor: unknown executor 'slurm' (known: local, ray)"),
    ):
        proc = run_cli("run", scenario, "--out", str(tmp_path / "out"), *args)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and words in lines[0], proc.stderr


def test_gpu_point_gets_its_gpus_together(cluster, tmp_path):
    """A CUDA point asking for 2 GPUs can only be placed on n2 (the one node with 2); 3 GPUs fit no node."""
    from bench.executors.ray import RayExecutor
    from bench.scenario import load_all
    from bench.sweep import plan, worker_env

    # a worker that cannot even start under a 64 MiB address space fails at once: only its placement matters
    executor = RayExecutor(address=cluster.address, gpus_per_point=2, memory_limit_bytes=64 * MB)
    loaded = load_all(scenarios(tmp_path)[:1])
    spec = plan(loaded, 1, "cuda", executor.check_device)[0]
    assert spec.device == "cuda:0"
    logs = tmp_path / "logs"
    logs.mkdir()
    ((_, records),) = executor.run_all([Job(spec, logs, worker_env())])
    (record,) = records
    assert record.status == "failed" and "without a result" in record.error
    assert record.details["node"]["ray_node_id"] == cluster.n2.node_id
    assert [g["index"] for g in record.details["node"]["gpus"]] == [0, 1]
    assert any(w.startswith("could not check whether another process") for w in record.warnings)  # no NVML

    too_many = RayExecutor(address=cluster.address, gpus_per_point=3)
    (record,) = too_many.run(Job(spec, logs, worker_env()))
    assert record.status == "failed" and "no node of the Ray cluster has 3 GPU(s)" in record.error
    with pytest.raises(BenchInputError, match="cuda:1: on Ray each point gets the GPU Ray assigns it"):
        plan(loaded, 1, "cuda:1", executor.check_device)


def test_node_lost_mid_run_is_retried_on_another_node(cluster, tmp_path):
    """The run is held on n1 (the other nodes are busy), n1 is removed, the run is measured on another node."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from bench.executors.ray import RayExecutor
    from bench.scenario import load_all
    from bench.sweep import plan, worker_env

    executor = RayExecutor(address=cluster.address)
    executor.connect()
    release = tmp_path / "release"

    def block(started: str, release: str) -> None:
        Path(started).touch()
        while not Path(release).exists():
            time.sleep(0.1)

    blocker = ray.remote(num_cpus=1, max_retries=0)(block)
    others = [cluster.head, cluster.n2]
    blocked = [
        blocker.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n.node_id, soft=False)).remote(
            str(tmp_path / f"blocking-{i}"), str(release)
        )
        for i, n in enumerate(others)
    ]
    wait_for(lambda: all((tmp_path / f"blocking-{i}").exists() for i in range(len(others))), 60)

    spec = plan(load_all(scenarios(tmp_path)[:1]), 1, None, executor.check_device)[0]
    logs = tmp_path / "logs"
    logs.mkdir()
    hold = Path(os.environ["BENCH_TEST_HOLD"])
    hold.touch()
    (cluster.hooks / "starts.txt").unlink(missing_ok=True)
    results: list = []
    thread = threading.Thread(target=lambda: results.extend(executor.run_all([Job(spec, logs, worker_env())])))
    thread.start()
    held = Path(f"{hold}.held")
    wait_for(held.exists, 120)
    import psutil

    ancestors = {p.pid for p in psutil.Process(int(held.read_text())).parents()}
    assert cluster.n1.all_processes["raylet"][0].process.pid in ancestors  # the held run is on n1
    cluster.cluster.remove_node(cluster.n1)
    release.touch()
    ray.get(blocked)
    thread.join(timeout=150)
    assert not thread.is_alive()
    ((_, records),) = results
    (record,) = records
    assert record.status == "ok", record.error
    assert record.details["infra_retries"] == 1 and len(record.details["infra_faults"]) == 1
    assert record.details["node"]["ray_node_id"] in {cluster.head.node_id, cluster.n2.node_id}
    assert starts(cluster.hooks, spec.run_id) == 2


def wait_for(condition, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


# --- the shared-GPU check, through a fake NVML (no GPU here) ---------------------------------------------------


class FakeNvml(types.ModuleType):
    """pynvml's calls that bench.measure.memory makes, over a table of GPUs and their processes."""

    class NVMLError(Exception):
        pass

    def __init__(self, gpus: dict[int, tuple[str, str, list[tuple[int, int | None]]]]):
        super().__init__("pynvml")
        self.gpus = gpus

    def nvmlInit(self):
        pass

    def nvmlDeviceGetHandleByIndex(self, i):
        if i not in self.gpus:
            raise self.NVMLError("Invalid Argument")
        return i

    def nvmlDeviceGetName(self, h):
        return self.gpus[h][0].encode()

    def nvmlDeviceGetUUID(self, h):
        return self.gpus[h][1]

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return [types.SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in self.gpus[h][2]]

    def nvmlDeviceGetGraphicsRunningProcesses(self, h):
        return []


def test_gpu_in_use_by_another_process_makes_the_run_invalid(monkeypatch, tmp_path):
    from bench.executors.ray import RayExecutor
    from bench.measure.memory import busy_reason, gpu_identities, gpu_processes
    from bench.records import run_fields
    from bench.results import Record
    from bench.scenario import load_all
    from bench.sweep import plan

    fake = FakeNvml({0: ("NVIDIA H100", "GPU-aaa", []), 1: ("NVIDIA H100", "GPU-bbb", [(4242, 3 * 2**30)])})
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert gpu_identities([1]) == [{"index": 1, "name": "NVIDIA H100", "uuid": "GPU-bbb"}]
    assert busy_reason(gpu_processes([0])) is None
    found = gpu_processes([0, 1])
    assert found == {"processes": [{"index": 1, "uuid": "GPU-bbb", "pid": 4242, "used_bytes": 3 * 2**30}]}
    assert "pid 4242 on GPU 1 (GPU-bbb) using 3072 MiB" in busy_reason(found)
    assert busy_reason(gpu_processes([7])).startswith("could not check")

    spec = plan(load_all(scenarios(tmp_path)[:1]), 1, None)[0]
    ok = Record(**run_fields(spec, "cuda:0"), status="ok", valid=True)
    result = {
        "records": [ok.model_dump(mode="json")],
        "node": {"ray_node_id": "n", "hostname": "h"},
        "fingerprint": {},
        "tmp": "/nowhere",
        "busy": found,
        "files": {},
    }
    (tmp_path / "logs").mkdir()
    (record,) = RayExecutor()._records(Job(spec, tmp_path / "logs", {}), result, [])
    assert record.valid is False and "pid 4242" in record.invalid_reasons[-1]
