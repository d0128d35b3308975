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


def output_cache(out: Any) -> Any:
    """The KV cache of a model output (`cache` from 5.24 on, `past_key_values` before)."""
    return out["cache"] if "cache" in out else out.get("past_key_values")


def output_with_cache(output_class: Any, cache: Any, **fields: Any) -> Any:
    """`output_class(**fields)` with the cache under the field name this transformers gives it."""
    name = "cache" if "cache" in output_class.__dataclass_fields__ else "past_key_values"
    return output_class(**fields, **{name: cache})
