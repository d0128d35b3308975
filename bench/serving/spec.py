"""The scenario's `serving:` section. With it, a text-generation scenario is a load test: each matrix point
(backend × precision × batching × batch_size, batch_size being the maximum batch) serves every level."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from bench.serving.arrivals import Arrival
from bench.serving.lengths import LengthSpec
from bench.serving.slo import SLOSpec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SweepSpec(_Strict):
    start_rate_per_s: PositiveFloat | None = Field(
        None, description="first rate (default: 1 / mean E2E served one at a time)"
    )
    max_levels: PositiveInt = Field(8, description="rate levels at most, after the one-at-a-time level")
    bisect_steps: NonNegativeInt = Field(3, description="levels spent bisecting between a passing and a failing rate")


class ServingSpec(_Strict):
    arrival: Arrival = "poisson"
    burstiness: PositiveFloat = Field(1.0, description="gamma shape: 1 = Poisson, < 1 burstier, > 1 more regular")
    rates: list[PositiveFloat] | Literal["sweep"] = Field(
        min_length=1, description="requests/s, one level each; or `sweep`"
    )
    requests: PositiveInt = Field(64, description="measured requests per level, after warmup_requests")
    warmup_requests: NonNegativeInt = 4
    max_queue_delay_ms: NonNegativeFloat = Field(20.0, description="dynamic: how long a batch waits for more")
    prompt_tokens: LengthSpec = LengthSpec(value=32)
    new_tokens: LengthSpec = LengthSpec(value=16)
    slo: SLOSpec = SLOSpec({})
    attainment_target: float = Field(0.95, gt=0, le=1, description="fraction of requests within every SLO")
    abort_wait_s: PositiveFloat | None = Field(
        None,
        description="stop sending once a request waited this long for "
        "its first token (default 10 × the largest SLO limit, else 60 s)",
    )
    sweep: SweepSpec = SweepSpec()
    fail_on_slo: bool = Field(
        False,
        description="a fixed-rate level that breaks an SLO makes `bench run` exit 1 (alerts are printed either way)",
    )

    @field_validator("rates", mode="before")
    @classmethod
    def _rates_shape(cls, value: object) -> object:
        if isinstance(value, str) and value != "sweep":
            raise ValueError(f"rates is a list of requests/s or `sweep`, not {value!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "ServingSpec":
        if self.rates == "sweep" and not self.slo.root:
            raise ValueError("rates: sweep searches for the highest rate within the SLO: give slo")
        if self.burstiness != 1.0 and self.arrival != "gamma":
            raise ValueError("burstiness is the gamma arrival's shape: set arrival: gamma")
        return self

    @property
    def abort_after_s(self) -> float:
        largest = self.slo.largest_limit_s()
        return self.abort_wait_s or (10 * largest if largest else 60.0)
