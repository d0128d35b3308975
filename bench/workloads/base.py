"""What a workload is: everything task-specific. It makes seeded inputs, performs one timed call, turns the
measured calls into its own `Metrics` model, and declares how that model is read downstream (its primary
throughput, what the gate compares, report columns, roofline units). Contract: docs/design.md.

Adding a workload = one module with a `Workload` subclass + one entry in `bench.workloads.WORKLOADS`
(or a module named in BENCH_WORKLOAD_MODULES that exposes it as `WORKLOAD`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel

from bench.workloads.metrics import MetricInfo, ReportColumn, WorkloadMetrics


class Workload:
    task: ClassVar[str]
    Spec: ClassVar[type[BaseModel]]  # the scenario's `workload:` section for this task
    Metrics: ClassVar[type[WorkloadMetrics]]  # the record's `metrics` for this task
    primary: ClassVar[str]  # the Metrics field a record's speed is judged by (its throughput)
    report_columns: ClassVar[tuple[ReportColumn, ...]] = ()  # task-specific columns of the points table
    fidelity_output: ClassVar[str] = "primary output"  # what `fidelity_outputs()["primary"]` is, in words

    @classmethod
    def primary_metric(cls) -> MetricInfo:
        return cls.Metrics.metric_infos[cls.primary]

    @classmethod
    def model_class(cls):
        """The transformers auto class that builds models for this task."""
        raise NotImplementedError

    @classmethod
    def build(cls, ref: Any, dtype: Any, device: Any, seed: int = 0) -> Any:
        """The model (or pipeline) on `device` in `dtype`, random or pretrained weights."""
        from bench import models

        return models.build(ref, cls.model_class(), dtype, device, seed=seed)

    @classmethod
    def parameter_count(cls, config: Any) -> int:
        from bench import models

        return models.parameter_count(config, cls.model_class())

    @classmethod
    def optimized_module(cls, model: Any) -> Any:
        """The module a backend quantizes or compiles (a pipeline names its hot part)."""
        return model

    @classmethod
    def weight_modules(cls, model: Any) -> dict[str, Any]:
        """Every module whose weights count towards the record's parameters and weight bytes."""
        return {"model": model}

    @classmethod
    def check_model(cls, spec: BaseModel, config: Any) -> tuple[str, str] | None:
        """(field, message) when this workload cannot run on a model with this config."""
        return None

    @classmethod
    def roofline(cls, record: Any, config: Any, ctx: Any) -> tuple[dict[str, Any], str] | None:
        """({phase name: bench.roofline.schema.Phase}, primary phase) of a measured record, from the analytic
        work of its units (bench.roofline.work); `ctx` is a bench.roofline.analysis.Context (dtypes, notes).
        None: this workload has no analytic model."""
        return None

    @classmethod
    def energy_units(cls, batch_size: int, spec: dict[str, Any], calls: int) -> dict[str, int]:
        """Units of work `calls` measured calls did, which energy is divided by (keys of
        bench.measure.telemetry.units.PER_UNIT_FIELD); the first is the primary one. {}: none."""
        return {}

    def __init__(self, run: Any, device: Any, clock: Any):
        self.run = run
        self.spec = self.Spec.model_validate(run.workload)
        self.device = device
        self.clock = clock
        self.details: dict[str, Any] = {}  # how the inputs were made, for the record's details

    def prepare_inputs(self, runnable: Any) -> None:
        raise NotImplementedError

    def call(self, runnable: Any) -> dict[str, Any]:
        """One timed call; returns this call's measurements (at least latency_s)."""
        raise NotImplementedError

    def fidelity_outputs(self, runnable: Any) -> dict[str, Any]:
        """Outputs compared with the fp32 eager reference (see bench.measure.fidelity): `primary`, a
        [batch, features] tensor, and optionally `tokens`. Called after the measured phase."""
        raise NotImplementedError

    def metrics(self, calls: list[dict[str, Any]]) -> WorkloadMetrics:
        """This workload's `Metrics`, computed from the measured calls."""
        raise NotImplementedError
