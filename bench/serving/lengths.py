"""Seeded prompt / new-token length distributions: fixed | uniform (inclusive) | normal (rounded, clipped) |
trace (a column of a CSV or JSONL file of request lengths, read and drawn when the scenario is loaded:
bench.serving.trace)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator

NEEDS = {"fixed": {"value"}, "uniform": {"min", "max"}, "normal": {"mean", "std", "max"}, "trace": {"file", "column"}}
OPTIONAL = {"normal": {"min"}, "trace": {"min", "max", "order"}}  # trace: min / max clip the file's lengths


class LengthSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    distribution: Literal["fixed", "uniform", "normal", "trace"] = "fixed"
    value: PositiveInt | None = None  # fixed
    min: PositiveInt | None = None  # uniform; normal: lower clip (default 1); trace: lower clip
    max: PositiveInt | None = None  # uniform; normal: upper clip (required: it bounds the model's positions); trace
    mean: PositiveFloat | None = None  # normal
    std: NonNegativeFloat | None = None  # normal
    file: str | None = None  # trace: CSV (a header row) or JSONL (an object a line), relative to the scenario
    column: str | None = None  # trace: the column / key holding the lengths, e.g. ContextTokens, GeneratedTokens
    order: Literal["sample", "replay"] | None = None  # trace: seeded draws with replacement (default) | in file order
    # trace, filled when the scenario is loaded (never written by hand): the lengths of warmup_requests +
    # requests, and the file's SHA-256 and row count, which make them part of the run's identity
    lengths: list[PositiveInt] | None = None
    sha256: str | None = None
    rows: PositiveInt | None = None

    @model_validator(mode="after")
    def _keys_fit(self) -> "LengthSpec":
        needs = NEEDS[self.distribution]
        allowed = needs | OPTIONAL.get(self.distribution, set())
        given = {
            k for k in ("value", "min", "max", "mean", "std", "file", "column", "order") if getattr(self, k) is not None
        }
        if needs - given:
            raise ValueError(f"a {self.distribution} length needs {', '.join(sorted(needs - given))}")
        if given - allowed:
            raise ValueError(f"a {self.distribution} length takes no {', '.join(sorted(given - allowed))}")
        if self.distribution != "trace" and (self.lengths, self.sha256, self.rows) != (None, None, None):
            raise ValueError("lengths, sha256 and rows belong to a trace length")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} > max {self.max}")
        return self

    @property
    def upper(self) -> int:
        """The largest length this distribution can produce (of a trace: of the lengths drawn from it)."""
        if self.distribution == "trace":
            if self.lengths is None:
                raise ValueError(f"trace {self.file}: its lengths are drawn when the scenario is loaded")
            return max(self.lengths)
        return self.value if self.distribution == "fixed" else self.max

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.distribution == "fixed":
            return np.full(n, self.value, dtype=int)
        if self.distribution == "uniform":
            return rng.integers(self.min, self.max + 1, n)
        if self.distribution == "trace":  # drawn at load time, with the scenario's seed (bench.serving.trace)
            if self.lengths is None or len(self.lengths) != n:
                raise ValueError(
                    f"trace {self.file}: lengths were drawn for {len(self.lengths or [])} requests, not {n}"
                )
            return np.asarray(self.lengths, dtype=int)
        draws = np.rint(rng.normal(self.mean, self.std, n))
        return np.clip(draws, self.min or 1, self.max).astype(int)
