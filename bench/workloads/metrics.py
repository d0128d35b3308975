"""How a workload declares its metrics: a `WorkloadMetrics` pydantic model (unknown keys rejected) whose every
field is annotated with a `Metric` (unit, direction, what it is, whether the gate compares it by default).

    class MyMetrics(WorkloadMetrics):
        latency_s: Annotated[Stats, Metric("s", "lower", "one call", gated=True)]
        items_per_s: Annotated[float, Metric("items/s", "higher", "batch / mean latency", gated=True,
                                             rate_of="latency_s")]

A field typed `Stats` is a distribution (raw samples kept, the gate reads it at its statistic); a float is a
scalar. A rate with `rate_of=SOURCE` is work / mean(SOURCE): the gate reads it at its statistic of SOURCE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from bench.measure.stats import Stats


@dataclass(frozen=True)
class Metric:
    unit: str  # as tables and axes print it: s, tokens/s, images/s
    better: Literal["higher", "lower"]
    what: str  # one line for the docs and the gate's legend
    gated: bool = False  # compared by `bench compare` by default
    rate_of: str | None = None  # a rate = work / mean(rate_of): gated at the gate's statistic of that source


@dataclass(frozen=True)
class MetricInfo:
    """A declared metric, with its name and whether it is a distribution (a `Stats`)."""

    name: str
    unit: str
    higher_is_better: bool
    what: str
    distribution: bool
    gated: bool
    rate_of: str | None


@dataclass(frozen=True)
class ReportColumn:
    """A column of the report's points table: `statistic` (p50, p99, …) of distribution `metric`, or the
    scalar `metric` itself when `statistic` is None."""

    header: str
    metric: str
    statistic: str | None = None


class WorkloadMetrics(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric_infos: ClassVar[dict[str, MetricInfo]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        declared = {}
        for name, field in cls.model_fields.items():
            meta = next((m for m in field.metadata if isinstance(m, Metric)), None)
            if meta is None:
                raise TypeError(f"{cls.__name__}.{name} has no Metric(...) annotation (unit, direction)")
            distribution = "Stats" in str(field.annotation)
            if meta.rate_of is not None and meta.rate_of not in cls.model_fields:
                raise TypeError(f"{cls.__name__}.{name}: rate_of {meta.rate_of!r} is not a field")
            if meta.gated and not distribution and meta.rate_of is None:
                raise TypeError(f"{cls.__name__}.{name}: a gated scalar must be a rate (rate_of=...)")
            declared[name] = MetricInfo(
                name, meta.unit, meta.better == "higher", meta.what, distribution, meta.gated, meta.rate_of
            )
        cls.metric_infos = declared

    def distributions(self) -> dict[str, Stats]:
        """Every distribution this record has (None fields left out)."""
        return {k: v for k, v in self if isinstance(v, Stats)}
