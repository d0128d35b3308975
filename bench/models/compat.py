"""The few places where supported transformers releases (5.17 to 5.x) differ, in one module.

- `no_init_weights`: skip weight initialisation when building a model whose weights are set right after.
- `cache_kwarg(model)`: the name a model's forward takes its KV cache under: `cache` from 5.24 on (where
  `past_key_values` is deprecated, with a warning per call), `past_key_values` before.
"""

from __future__ import annotations

import inspect
from typing import Any


def no_init_weights():
    from transformers.initialization import no_init_weights as ctx

    return ctx()


def cache_kwarg(model: Any) -> str:
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"
