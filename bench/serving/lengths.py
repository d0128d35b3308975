"""Seeded prompt / new-token length distributions: fixed | uniform (inclusive) | normal (rounded, clipped)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator


class LengthSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    distribution: Literal["fixed", "uniform", "normal"] = "fixed"
    value: PositiveInt | None = None  # fixed
    min: PositiveInt | None = None  # uniform; normal: lower clip (default 1)
    max: PositiveInt | None = None  # uniform; normal: upper clip (required: it bounds the model's positions)
    mean: PositiveFloat | None = None  # normal
    std: NonNegativeFloat | None = None  # normal

    @model_validator(mode="after")
    def _keys_fit(self) -> "LengthSpec":
        needs = {"fixed": {"value"}, "uniform": {"min", "max"}, "normal": {"mean", "std", "max"}}[self.distribution]
        allowed = needs | ({"min"} if self.distribution == "normal" else set())
        given = {k for k in ("value", "min", "max", "mean", "std") if getattr(self, k) is not None}
        if needs - given:
            raise ValueError(f"a {self.distribution} length needs {', '.join(sorted(needs - given))}")
        if given - allowed:
            raise ValueError(f"a {self.distribution} length takes no {', '.join(sorted(given - allowed))}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} > max {self.max}")
        return self

    @property
    def upper(self) -> int:
        """The largest length this distribution can produce."""
        return self.value if self.distribution == "fixed" else self.max

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.distribution == "fixed":
            return np.full(n, self.value, dtype=int)
        if self.distribution == "uniform":
            return rng.integers(self.min, self.max + 1, n)
        draws = np.rint(rng.normal(self.mean, self.std, n))
        return np.clip(draws, self.min or 1, self.max).astype(int)
