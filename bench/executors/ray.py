"""Ray executor: every RunSpec is one Ray task; Ray places it and the task runs the same `python -m bench.worker`
(through the local executor's `spawn`: a fresh process, timeout, memory limit) on the node Ray chose.

- Resources: a CPU point asks for `cpus_per_point` CPUs; a CUDA point for one GPU, or `gpus_per_point` GPUs
  reserved together on one node through a placement group. A point no node can ever hold is a failed record.
- All tasks are submitted at once; `run_all` yields each job's records as its task ends (`ray.wait`).
- Records come back unchanged, with `details["node"]` (hostname, Ray node id, GPUs by NVML name and UUID) and,
  when a process other than the worker held one of the point's GPUs as it started, `valid: false` and why.
- An infrastructure fault (the task's node or Ray worker lost) is resubmitted up to `max_infra_retries` times,
  counted in `details["infra_retries"]`; what the worker itself reports (error, OOM, timeout) is never retried.
- Code: with an `address` (a remote cluster), this checkout travels as the job's runtime_env working_dir.
- environment.json gains `nodes`: each node's fingerprint (bench.environment.collect on that node).
"""

from __future__ import annotations

import functools
import json
import os
import platform
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import ray
import ray.exceptions as rx

from bench import store
from bench.errors import BenchInputError
from bench.executors import Job
from bench.records import failed_record
from bench.results import ENVIRONMENT_FILE, Record

# The task's process or its node went away: nothing about the measurement; run it again elsewhere.
INFRA_FAULTS = (
    rx.WorkerCrashedError,
    rx.NodeDiedError,
    rx.LocalRayletDiedError,
    rx.ActorDiedError,
    rx.ObjectLostError,
    rx.OwnerDiedError,
)
CHECKOUT = Path(__file__).resolve().parents[2]
SHIP_EXCLUDES = [".git", ".venv", "reports", "**/__pycache__", "*.pt", "*.onnx", ".pytest_cache"]


# --- on the node -----------------------------------------------------------------------------------------------


def _gpu_indices() -> list[int]:
    return [int(i) for i in ray.get_gpu_ids()]


def node_identity(gpu_indices: list[int]) -> dict[str, Any]:
    from bench.measure.memory import gpu_identities

    ctx = ray.get_runtime_context()
    node: dict[str, Any] = {
        "hostname": platform.node(),
        "ray_node_id": ctx.get_node_id(),
        "ip": ray.util.get_node_ip_address(),
    }
    if gpu_indices:
        node["gpus"] = gpu_identities(gpu_indices)
    return node


_FINGERPRINTS: dict[str, dict[str, Any]] = {}  # per node, in this Ray worker process (reused within a job)


def _fingerprint(node_id: str, env: dict[str, str]) -> dict[str, Any] | str:
    """bench.environment.collect() of this node, in a process of its own with the worker's environment (torch
    is not imported into the long-lived Ray worker); or why not."""
    if node_id in _FINGERPRINTS:
        return _FINGERPRINTS[node_id]
    import subprocess
    import sys

    code = "import json; from bench.environment import collect; print(json.dumps(collect()))"
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, check=True
        )
        _FINGERPRINTS[node_id] = json.loads(proc.stdout.strip().splitlines()[-1])
        return _FINGERPRINTS[node_id]
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        return f"fingerprint failed: {describe_fault(exc)}"


def _worker_env(job_vars: dict[str, str], shipped: bool) -> dict[str, str]:
    env = dict(os.environ, **job_vars)  # the node's own environment (Ray's CUDA_VISIBLE_DEVICES) + the job's
    if shipped:  # bench is imported from the working_dir Ray unpacked (the task's working directory)
        env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["BENCH_RUNNER_PID"] = str(os.getpid())  # the worker dies with this task (PR_SET_PDEATHSIG)
    # Ray's GPU ids index CUDA_VISIBLE_DEVICES; in PCI bus order they are NVML's indices too (identity, busy check).
    # The worker sees one device either way.
    env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    return env


def _run_on_node(
    kind: str,
    spec_json: str,
    job_vars: dict[str, str],
    reference: bytes | None,
    memory_limit_bytes: int | None,
    shipped: bool,
    name: str = "reference.pt",
    known_nodes: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """One point (kind "run") or one fp32 reference (kind "reference", written as NAME) in a fresh worker
    process on this node."""
    from bench.executors.local import LocalExecutor
    from bench.measure.memory import gpu_processes
    from bench.scenario import RunSpec

    entered = time.perf_counter()
    gpus = _gpu_indices()
    node = node_identity(gpus)
    busy = gpu_processes(gpus) if gpus else None  # before the worker exists: every process found is another's
    spec = RunSpec.model_validate_json(spec_json)
    local = LocalExecutor(memory_limit_bytes)
    env = _worker_env(job_vars, shipped)
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        logs = Path(tmp)
        out: dict[str, Any] = {"node": node, "tmp": tmp, "busy": busy}
        if kind == "reference":
            path = logs / name
            out["error"] = local.reference(Job(spec, logs, env), path)
            out["data"] = path.read_bytes() if path.exists() and out["error"] is None else None
        else:
            if reference is not None:
                ref_path = logs / "reference.pt"
                ref_path.write_bytes(reference)
                spec = spec.model_copy(update={"reference_path": str(ref_path)})  # where it lies on this node
            started = time.perf_counter()
            records = local.run(Job(spec, logs, env))
            out["worker_s"] = time.perf_counter() - started  # the worker process, start to exit
            out["records"] = [r.model_dump(mode="json") for r in records]
        out["files"] = {
            p.name: p.read_bytes()
            for p in logs.iterdir()
            if p.suffix in (".log", ".json") and not p.name.endswith(".spec.json")
        }
    if node["ray_node_id"] not in known_nodes:  # after the worker: never beside a measurement
        out["fingerprint"] = _fingerprint(node["ray_node_id"], env)
    out["task_s"] = time.perf_counter() - entered
    return out


@functools.cache
def _task():
    return ray.remote(_run_on_node)


# --- on the driver ---------------------------------------------------------------------------------------------


def describe_fault(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}"


class RayExecutor:
    """Run jobs as Ray tasks on the cluster at `address` (None: $RAY_ADDRESS, else a Ray started here)."""

    def __init__(
        self,
        address: str | None = None,
        memory_limit_bytes: int | None = None,
        max_infra_retries: int = 2,
        cpus_per_point: float = 1,
        gpus_per_point: int = 1,
        ship_code: bool | None = None,
        init_options: dict[str, Any] | None = None,
    ):
        if max_infra_retries < 0 or cpus_per_point <= 0 or gpus_per_point < 1:
            raise BenchInputError(
                "--executor ray", "max_infra_retries >= 0, cpus_per_point > 0 and gpus_per_point >= 1 are required"
            )
        self.address, self.memory_limit_bytes = address, memory_limit_bytes
        self.max_infra_retries, self.cpus_per_point, self.gpus_per_point = (
            max_infra_retries,
            cpus_per_point,
            gpus_per_point,
        )
        self.ship_code = address is not None if ship_code is None else ship_code
        self.init_options = init_options or {}
        self.shipped = False
        self.nodes: dict[str, dict[str, Any]] = {}
        self._references: dict[str, ray.ObjectRef] = {}

    # -- connection and resources ----------------------------------------------------------------------------
    def connect(self) -> None:
        if not ray.is_initialized():
            runtime_env: dict[str, Any] = {}
            if self.ship_code and (CHECKOUT / "pyproject.toml").exists():
                runtime_env = {"working_dir": str(CHECKOUT), "excludes": SHIP_EXCLUDES}
            options = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            try:
                ray.init(address=self.address, runtime_env=runtime_env or None, **(options | self.init_options))
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise BenchInputError(
                    "--address", f"cannot connect to the Ray cluster at {self.address}: {describe_fault(exc)}"
                ) from None
        self.shipped = bool(ray.get_runtime_context().runtime_env.get("working_dir"))

    def check_device(self, requested: str, source: str) -> str:
        """A device the cluster has: Ray assigns each task its GPU, which the worker sees as cuda:0."""
        self.connect()
        gpus = ray.cluster_resources().get("GPU", 0)
        if requested == "auto":
            requested = "cuda" if gpus else "cpu"
        if requested.startswith("cuda"):
            if ":" in requested and requested != "cuda:0":
                raise BenchInputError(
                    source,
                    f"{requested}: on Ray each point gets the GPU Ray assigns it; ask for cuda (or cuda:0)",
                    "device",
                )
            if gpus < 1:
                raise BenchInputError(
                    source, f"{requested} requested but the Ray cluster has no GPU resource", "device"
                )
            return "cuda:0"
        return requested

    def _resources(self, spec) -> tuple[dict[str, Any], str | None]:
        """Ray options for the point's task, or why no node can ever hold it."""
        if not spec.device.startswith("cuda"):
            return {"num_cpus": self.cpus_per_point, "num_gpus": 0}, None
        n = self.gpus_per_point
        biggest = max((node["Resources"].get("GPU", 0) for node in ray.nodes() if node["Alive"]), default=0)
        if biggest < n:
            return {}, f"no node of the Ray cluster has {n} GPU(s) (largest: {biggest:g})"
        if n == 1:
            return {"num_cpus": 1, "num_gpus": 1}, None
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        group = placement_group([{"GPU": n, "CPU": 1}], strategy="STRICT_PACK")  # all N GPUs or none
        strategy = PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=0)
        return {"num_cpus": 1, "num_gpus": n, "scheduling_strategy": strategy, "_group": group}, None

    def _job_vars(self, job: Job) -> dict[str, str]:
        """What the job adds to an environment (offline flags, an arm's variables), not this machine's paths."""
        drop = {"BENCH_RUNNER_PID"} | ({"PYTHONPATH", "PYTHONSAFEPATH"} if self.shipped else set())
        keep = {"OMP_NUM_THREADS", "MKL_NUM_THREADS"}  # else Ray sets them to the task's CPUs
        return {k: v for k, v in job.env.items() if k not in drop and (os.environ.get(k) != v or k in keep)}

    def _submit(self, kind: str, job: Job, reference: ray.ObjectRef | None = None, name: str = "reference.pt"):
        options, why = self._resources(job.spec)
        if why:
            return None, why, None
        group = options.pop("_group", None)
        task = _task().options(max_retries=0, retry_exceptions=False, **options)
        ref = task.remote(
            kind,
            job.spec.model_dump_json(),
            self._job_vars(job),
            reference,
            self.memory_limit_bytes,
            self.shipped,
            name,
            frozenset(self.nodes),
        )
        return ref, None, group

    def _note_node(self, out: dict[str, Any], out_dir: Path) -> None:
        node_id = out["node"]["ray_node_id"]
        if node_id in self.nodes or "fingerprint" not in out:
            return
        fingerprint = out["fingerprint"]
        self.nodes[node_id] = (fingerprint if isinstance(fingerprint, dict) else {"error": fingerprint}) | {
            "ray_node_id": node_id
        }
        path = out_dir / ENVIRONMENT_FILE
        try:
            env = json.loads(path.read_text()) if path.exists() else {}
        except ValueError:
            env = {}
        store.write_json(path, env | {"executor": "ray", "nodes": self.nodes})

    @staticmethod
    def _copy_files(out: dict[str, Any], logs: Path) -> None:
        for name, data in out["files"].items():
            (logs / name).write_bytes(data)

    # -- the Executor protocol -------------------------------------------------------------------------------
    def reference(self, job: Job, out: Path) -> str | None:
        self.connect()
        for attempt in range(self.max_infra_retries + 1):
            ref, why, group = self._submit("reference", job, name=out.name)
            if why:
                return f"the fp32 eager reference cannot run: {why}"
            try:
                result = ray.get(ref)
            except INFRA_FAULTS as exc:
                error = f"the fp32 eager reference was lost {attempt + 1} time(s): {describe_fault(exc)}"
                continue
            finally:
                _remove(group)
            self._note_node(result, job.logs.parent)
            self._copy_files(result, job.logs)
            if result["error"]:
                return result["error"].replace(result["tmp"], str(job.logs))
            out.write_bytes(result["data"])
            return None
        return error

    def run(self, job: Job) -> list[Record]:
        return next(self.run_all([job]))[1]

    def run_all(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, list[Record]]]:
        """Submit every job (as `jobs` yields them), then yield each job's records as its task ends."""
        self.connect()
        pending: dict[ray.ObjectRef, tuple[Job, list[str], Any]] = {}
        submitted: dict[ray.ObjectRef, float] = {}

        def submit(job: Job, faults: list[str]) -> list[Record] | None:
            reference = None
            if job.spec.reference_path:
                path = job.spec.reference_path
                if path not in self._references:
                    self._references[path] = ray.put(Path(path).read_bytes())
                reference = self._references[path]
            (job.logs / f"{job.spec.run_id}.spec.json").write_text(job.spec.model_dump_json(indent=2))  # as local
            ref, why, group = self._submit("run", job, reference)
            if why:
                return [failed_record(job.spec, "failed", f"cannot place the run on the Ray cluster: {why}")]
            pending[ref], submitted[ref] = (job, faults, group), time.perf_counter()
            return None

        try:
            for job in jobs:
                if (records := submit(job, [])) is not None:
                    yield job, records
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                job, faults, group = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except INFRA_FAULTS as exc:
                    faults.append(describe_fault(exc))
                    _remove(group)
                    if len(faults) <= self.max_infra_retries:
                        if (records := submit(job, faults)) is not None:
                            yield job, records
                        continue
                    error = (
                        f"lost to infrastructure faults {len(faults)} time(s) (max_infra_retries="
                        f"{self.max_infra_retries}): {'; '.join(faults)}"
                    )
                    record = failed_record(job.spec, "failed", error)
                    record.details.update(infra_retries=len(faults) - 1, infra_faults=faults)
                    yield job, [record]
                    continue
                except rx.OutOfMemoryError as exc:  # Ray's memory monitor killed the task: the run's memory
                    _remove(group)
                    yield (
                        job,
                        [
                            failed_record(
                                job.spec,
                                "failed",
                                f"out of memory: Ray's memory monitor killed the task: {describe_fault(exc)}",
                            )
                        ],
                    )
                    continue
                except rx.RayError as exc:  # the task's own code raised, the runtime env failed: not the node's
                    _remove(group)
                    yield job, [failed_record(job.spec, "failed", f"the Ray task failed: {describe_fault(exc)}")]
                    continue
                _remove(group)
                result["driver_s"] = time.perf_counter() - submitted.pop(ref)
                yield job, self._records(job, result, faults)
        finally:
            for ref, (_, _, group) in pending.items():  # Ctrl-C or a failed append: stop what still runs
                ray.cancel(ref, force=True)
                _remove(group)

    def _records(self, job: Job, result: dict[str, Any], faults: list[str]) -> list[Record]:
        from bench.measure.memory import busy_reason

        self._note_node(result, job.logs.parent)
        self._copy_files(result, job.logs)
        records = []
        for data in result["records"]:
            record = Record.model_validate(data)
            if record.error:  # the log named by the error is the copy in this run directory
                record.error = record.error.replace(result["tmp"], str(job.logs))
            record.details["node"] = result["node"]
            if "driver_s" in result:  # submit -> result on the driver; task and worker durations on the node
                record.details["ray"] = {k: round(result[k], 3) for k in ("driver_s", "task_s", "worker_s")}
            if faults:
                record.details.update(infra_retries=len(faults), infra_faults=faults)
            busy = result["busy"]
            if busy is not None and (reason := busy_reason(busy)):
                if reason.startswith("could not"):
                    record.warnings.append(reason)
                else:
                    record.valid = False
                    record.invalid_reasons.append(reason)
            records.append(record)
        return records


def _remove(group) -> None:
    if group is not None:
        from ray.util.placement_group import remove_placement_group

        remove_placement_group(group)
