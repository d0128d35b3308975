"""Scenario files: schema (pydantic v2, unknown keys are errors), safe YAML loading, matrix expansion.

A scenario is validated completely (including resolving its model and checking the workload against
the model's limits) before anything runs or is written.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
)

from bench.errors import BenchInputError
from bench.measure.telemetry.schema import TelemetrySpec
from bench.precisions import PRECISIONS, Precision  # noqa: F401 (PRECISIONS re-exported)
from bench.serving.spec import ServingSpec

DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?)$"
MATRIX_KEYS = ("backend", "precision", "batch_size", "batching")


MAX_BATCH_SIZE = 65_536
MAX_INT = 2**63 - 1  # any integer in a scenario must fit a C int64 (torch, numpy)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelSpec(Strict):
    name: str = Field(min_length=1, description="bundled architecture, hub id, or local directory")
    weights: Literal["random", "pretrained"] = "random"


def _as_list(value: Any) -> Any:
    return value if isinstance(value, list) else [value]


class MatrixSpec(Strict):
    backend: list[str] = Field(default=["eager"], min_length=1)
    precision: list[Precision] = Field(default=["fp32"], min_length=1)
    batch_size: list[Annotated[int, Field(gt=0, le=MAX_BATCH_SIZE)]] = Field(default=[1], min_length=1)
    batching: list[str] | None = Field(None, min_length=1, description="serving scenarios: batching policies")

    _wrap = field_validator("backend", "precision", "batch_size", "batching", mode="before")(_as_list)

    @field_validator("batching")
    @classmethod
    def _known_policy(cls, names: list[str] | None) -> list[str] | None:
        from bench.serving.policies import POLICIES

        for name in names or []:
            if name not in POLICIES:
                raise ValueError(f"unknown batching policy {name!r} (known: {', '.join(POLICIES)})")
        return names

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, names: list[str]) -> list[str]:
        from bench.backends import BACKENDS

        for name in names:
            if name not in BACKENDS:
                raise ValueError(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})")
        return names


class MeasureSpec(Strict):
    warmup: NonNegativeInt = Field(2, le=100_000, description="warm-up calls after the first (cold) call")
    min_iterations: PositiveInt = Field(10, le=10_000_000)
    min_time_s: NonNegativeFloat = Field(2.0, le=86_400.0)
    timeout_s: PositiveFloat = Field(600.0, le=7 * 86_400.0, description="wall-clock limit of one run's process")
    max_cv: PositiveFloat = Field(
        0.10, le=100.0, description="latency coefficient of variation above which a run is invalid"
    )
    seed: int = Field(0, ge=0, le=MAX_INT)
    telemetry: TelemetrySpec = TelemetrySpec()  # energy, clocks, throttling: bench.measure.telemetry


class Scenario(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str | None = None
    task: str
    model: ModelSpec
    device: str = Field("auto", pattern=DEVICE_PATTERN)
    matrix: MatrixSpec = MatrixSpec()
    exclude: list[dict[str, Any]] = []
    workload: dict[str, Any] = {}
    backend_options: dict[str, dict[str, Any]] = {}
    measure: MeasureSpec = MeasureSpec()
    serving: ServingSpec | None = None  # a load test (bench.serving): arrivals, rates, SLOs

    @field_validator("task")
    @classmethod
    def _known_task(cls, task: str) -> str:
        from bench.workloads import WORKLOADS

        if task not in WORKLOADS:
            raise ValueError(f"unknown task {task!r} (known: {', '.join(WORKLOADS)})")
        return task


class RunSpec(BaseModel):
    """One (matrix point, repeat): everything a worker process needs, serialisable to JSON."""

    model_config = ConfigDict(extra="forbid")

    scenario: str
    scenario_file: str
    task: str
    model: str
    weights: str
    model_kind: str  # bundled | directory | hub
    model_location: str  # config path, directory or hub id
    device: str  # as requested: auto | cpu | cuda[:N]; the runner resolves it
    backend: str
    precision: str
    batch_size: int
    workload: dict[str, Any]
    backend_options: dict[str, Any] = {}
    measure: MeasureSpec
    repeat: int = 0
    batching: str | None = None  # serving: the batching policy (bench.serving.policies)
    serving: dict[str, Any] | None = None  # serving: the scenario's validated `serving:` section
    # Set by the runner, not part of the identity: the fp32 eager reference outputs to compare with
    # (a file), or why there are none.
    reference_path: str | None = None
    reference_error: str | None = None

    def identity(self, with_repeat: bool = True) -> dict[str, Any]:
        """What is measured: the point (with its repeat). `run_id` adds how it is measured."""
        keys = [
            "scenario",
            "task",
            "model",
            "weights",
            "device",
            "backend",
            "precision",
            "batch_size",
            "workload",
            "backend_options",
        ]
        ident = {k: getattr(self, k) for k in keys}
        if self.serving is not None:  # only then: other points keep their ids
            ident |= {"batching": self.batching, "serving": self.serving}
        if with_repeat:
            ident["repeat"] = self.repeat
        return ident

    def measured_settings(self) -> dict[str, Any]:
        """The measure settings that change a measurement (all but the process time limit)."""
        return self.measure.model_dump(mode="json", exclude={"timeout_s"})

    @property
    def point_id(self) -> str:
        return _digest(self.identity(with_repeat=False))

    @property
    def run_id(self) -> str:
        return _digest(self.identity() | {"measure": self.measured_settings()})

    def reference_spec(self) -> "RunSpec":
        """The run whose outputs are this run's fidelity reference: same model, weights, seed, inputs
        and device, eager fp32."""
        return self.model_copy(
            update=dict(
                backend="eager",
                precision="fp32",
                backend_options={},
                repeat=0,
                reference_path=None,
                reference_error=None,
            )
        )

    @property
    def reference_key(self) -> str:
        ref = self.reference_spec()
        return _digest(
            {
                k: getattr(ref, k)
                for k in ("task", "model", "weights", "model_location", "device", "batch_size", "workload")
            }
            | {"seed": self.measure.seed}
        )

    def label(self) -> str:
        policy = f"/{self.batching}" if self.batching else ""
        return (
            f"{self.scenario}/{self.model}/{self.backend}/{self.precision}{policy}/bs{self.batch_size}#r{self.repeat}"
        )


def _digest(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


class LoadedScenario(BaseModel):
    path: str
    scenario: Scenario
    workload: BaseModel  # the task's validated workload section
    model_kind: str
    model_location: str
    points: list[dict[str, Any]]  # matrix points after exclude

    model_config = ConfigDict(arbitrary_types_allowed=True)

    def run_specs(self, repeats: int = 1, device: str | None = None) -> list[RunSpec]:
        sc = self.scenario
        specs = []
        for point in self.points:
            for repeat in range(repeats):
                specs.append(
                    RunSpec(
                        scenario=sc.name,
                        scenario_file=self.path,
                        task=sc.task,
                        model=sc.model.name,
                        weights=sc.model.weights,
                        model_kind=self.model_kind,
                        model_location=self.model_location,
                        device=device or sc.device,
                        backend=point["backend"],
                        precision=point["precision"],
                        batch_size=point["batch_size"],
                        workload=self.workload.model_dump(),
                        backend_options=sc.backend_options.get(point["backend"], {}),
                        measure=sc.measure,
                        repeat=repeat,
                        batching=point.get("batching"),
                        serving=sc.serving.model_dump(mode="json") if sc.serving else None,
                    )
                )
        return specs


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _raise_validation(path: str, err: ValidationError, prefix: str = "") -> None:
    first = err.errors()[0]
    field = _loc(first["loc"])
    if prefix:
        field = prefix if field == "(top level)" else f"{prefix}.{field}"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] == "value_error":
        msg = msg.removeprefix("Value error, ")
    elif first["type"] == "missing":
        msg = "required key is missing"
    more = f" (and {err.error_count() - 1} more error(s))" if err.error_count() > 1 else ""
    raise BenchInputError(path, f"{msg}{more}", field) from None


class _Loader(yaml.SafeLoader):
    """Safe YAML (never constructs Python objects); `1e9` is a number, as in YAML 1.2 and JSON."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def _check_nodes(src: str, node: yaml.Node, path: str = "") -> None:
    """Duplicate keys, non-finite numbers and integers that fit no int64 are errors naming key and line."""
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                _check_nodes(src, value_node, path)
                continue
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else f"<{key_node.id}>"
            where = f"{path}.{key}" if path else str(key)
            if key in seen:
                raise BenchInputError(
                    src,
                    f"duplicate key {key!r} at line {key_node.start_mark.line + 1} (first at line {seen[key]})",
                    where,
                )
            seen[key] = key_node.start_mark.line + 1
            _check_nodes(src, value_node, where)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_nodes(src, item, f"{path}[{i}]")
    elif node.tag == "tag:yaml.org,2002:float":
        value = _Loader.construct_yaml_float(_Loader(""), node)
        if not math.isfinite(value):
            raise BenchInputError(src, f"non-finite number {node.value!r} at line {line}", path or None)
    elif node.tag == "tag:yaml.org,2002:int":
        value = _Loader.construct_yaml_int(_Loader(""), node)
        if abs(value) > MAX_INT:
            raise BenchInputError(
                src, f"integer {node.value} at line {line} is beyond any sane limit (2**63)", path or None
            )


def read_yaml(path: Path) -> dict[str, Any]:
    src = str(path)
    if not path.exists():
        raise BenchInputError(src, "no such file")
    if not path.is_file():
        raise BenchInputError(src, "not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchInputError(src, f"cannot read: {exc}") from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_nodes(src, node)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise BenchInputError(src, f"malformed YAML{where}: {problem}") from None
    finally:
        loader.dispose()
    if data is None:
        raise BenchInputError(src, "empty scenario file")
    if not isinstance(data, dict):
        raise BenchInputError(src, f"a scenario must be a mapping, got {type(data).__name__}")
    return data


def _expand(path: str, sc: Scenario) -> list[dict[str, Any]]:
    matrix = sc.matrix
    for i, rule in enumerate(sc.exclude):
        for key in rule:
            if key not in MATRIX_KEYS:
                raise BenchInputError(
                    path, f"unknown matrix key {key!r} (known: {', '.join(MATRIX_KEYS)})", f"exclude[{i}].{key}"
                )
        if not rule:
            raise BenchInputError(path, "an exclude rule needs at least one key", f"exclude[{i}]")
    points = []
    batching = matrix.batching or ["none"] if sc.serving else [None]
    for values in itertools.product(matrix.backend, matrix.precision, matrix.batch_size, batching):
        point = {k: v for k, v in zip(MATRIX_KEYS, values) if v is not None}
        if any(all(point[k] == v for k, v in rule.items()) for rule in sc.exclude):
            continue
        if point not in points:
            points.append(point)
    if not points:
        raise BenchInputError(path, "removes every point of the matrix; nothing would run", "exclude")
    return points


def load_scenario(path: str | Path) -> LoadedScenario:
    """Load and fully validate one scenario file. Raises BenchInputError naming file and field."""
    from bench import models
    from bench.workloads import WORKLOADS

    path = Path(path)
    src = str(path)
    data = read_yaml(path)
    try:
        sc = Scenario.model_validate(data, strict=True)
    except ValidationError as err:
        _raise_validation(src, err)
    for name in sc.backend_options:
        if name not in sc.matrix.backend:
            raise BenchInputError(
                src, f"options for backend {name!r}, which the matrix does not run", f"backend_options.{name}"
            )
    from bench.backends import BACKENDS

    for name, options in sc.backend_options.items():
        try:
            BACKENDS[name].Options.model_validate(options, strict=True)
        except ValidationError as err:
            _raise_validation(src, err, prefix=f"backend_options.{name}")
    workload_cls = WORKLOADS[sc.task]
    workload_section = sc.workload
    if sc.serving is not None or sc.matrix.batching is not None:
        from bench.serving.scenario import check_serving

        sc, workload_section = check_serving(src, sc, _expand(src, sc))
    try:
        workload = workload_cls.Spec.model_validate(workload_section, strict=True)
    except ValidationError as err:
        _raise_validation(src, err, prefix="workload")
    points = _expand(src, sc)
    for point in points:  # what a backend cannot run at all (an endpoint: only the server's batching)
        problem = BACKENDS[point["backend"]].check_point(point, sc.serving is not None)
        if problem:
            raise BenchInputError(src, problem[1], problem[0])
    try:
        ref = models.resolve(sc.model.name, sc.model.weights, base_dir=path.parent)
        config = models.load_config(ref)
    except models.ModelNotFound as exc:
        raise BenchInputError(src, str(exc), "model.name") from None
    problem = workload_cls.check_model(workload, config)
    if problem:
        field, message = problem
        raise BenchInputError(src, message, field)
    return LoadedScenario(
        path=src, scenario=sc, workload=workload, model_kind=ref.kind, model_location=ref.location, points=points
    )


def scenario_files(paths: list[str | Path]) -> list[Path]:
    """Expand directories into the scenario files (*.yaml, *.yml) directly inside them, sorted."""
    from bench.suites import resolve

    files: list[Path] = []
    for p in map(resolve, paths):  # a bundled suite's name (`cpu`) resolves into the package
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix in (".yaml", ".yml") and f.is_file())
            if not found:
                raise BenchInputError(str(p), "directory holds no scenario files (*.yaml, *.yml)")
            files.extend(found)
        else:
            files.append(p)
    return files


def load_all(paths: list[str | Path]) -> list[LoadedScenario]:
    loaded = [load_scenario(f) for f in scenario_files(paths)]
    seen: dict[str, str] = {}
    for ls in loaded:
        if ls.scenario.name in seen:
            raise BenchInputError(
                ls.path, f"scenario name {ls.scenario.name!r} is already used by {seen[ls.scenario.name]}", "name"
            )
        seen[ls.scenario.name] = ls.path
    return loaded
