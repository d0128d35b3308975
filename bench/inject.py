"""TEST-ONLY: make every timed call proportionally slower, to measure the regression gate's power.

    BENCH_INJECT_SLOWDOWN=0.10 bench run ...    # every call takes 10% longer

Each segment of a call is followed by a busy-wait of `fraction` × its own time, inside the timed region.
Marked in every record (`details.injected_slowdown`), the worker log and environment.json (docs/gate.md).
"""

from __future__ import annotations

import sys
import time
from typing import Any

ENV = "BENCH_INJECT_SLOWDOWN"


def slowdown_fraction(environ: dict[str, str] | None = None) -> float | None:
    """The fraction, or None when unset/empty. A malformed value is an error (the run fails with it)."""
    import os

    raw = (environ if environ is not None else os.environ).get(ENV, "").strip()
    if not raw:
        return None
    try:
        fraction = float(raw)
    except ValueError:
        raise ValueError(f"{ENV}={raw!r} is not a number (e.g. 0.10 for 10% slower)") from None
    if not 0 <= fraction <= 10:
        raise ValueError(f"{ENV}={raw!r} must lie between 0 and 10")
    return fraction or None


def maybe_slow_down(prepared: Any) -> Any:
    """The worker's hook, right after backend.prepare: a no-op unless BENCH_INJECT_SLOWDOWN is set."""
    fraction = slowdown_fraction()
    if fraction is None:
        return prepared
    print(
        f"WARNING: {ENV}={fraction:g} is set: every timed call is made {fraction:.0%} slower on purpose "
        "(test-only knob; these numbers are not real measurements)",
        file=sys.stderr,
        flush=True,
    )
    prepared.runnable = Slowed(prepared.runnable, fraction)
    prepared.details["injected_slowdown"] = fraction
    return prepared


def _sync() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class _Stretch:
    """Busy-waits `fraction` × the time since the previous mark, then marks again."""

    def __init__(self, fraction: float):
        self.fraction = fraction
        self.last = time.perf_counter()

    def mark(self) -> None:
        _sync()
        now = time.perf_counter()
        until = now + self.fraction * (now - self.last)
        while time.perf_counter() < until:
            pass
        self.last = time.perf_counter()


class _StretchedStreamer:
    """A generate() streamer that stretches the segment before each token is handed over."""

    def __init__(self, inner: Any, stretch: _Stretch):
        self._inner = inner
        self._stretch = stretch

    def put(self, value: Any) -> None:
        self._stretch.mark()
        self._inner.put(value)

    def end(self) -> None:
        self._inner.end()


class Slowed:
    """The runnable, slower: `generate` and calls are stretched; every other attribute is the runnable's."""

    def __init__(self, inner: Any, fraction: float):
        self._inner = inner
        self._fraction = fraction

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def generate(self, *args: Any, streamer: Any = None, **kwargs: Any) -> Any:
        stretch = _Stretch(self._fraction)
        if streamer is not None:
            streamer = _StretchedStreamer(streamer, stretch)
        out = self._inner.generate(*args, streamer=streamer, **kwargs)
        stretch.mark()
        return out

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        stretch = _Stretch(self._fraction)
        out = self._inner(*args, **kwargs)
        stretch.mark()
        return out
