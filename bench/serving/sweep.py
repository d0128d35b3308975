"""`rates: sweep`: the highest rate that meets the SLO, by doubling (or halving) from a start rate until one
level passes and one fails, then bisecting between them. `passes(rate)` measures one level."""

from __future__ import annotations

import math
from typing import Callable


def search(
    passes: Callable[[float], bool], start: float, max_levels: int = 8, bisect_steps: int = 3
) -> tuple[float | None, float | None, list[tuple[float, bool]]]:
    """(highest passing rate, lowest failing rate, [(rate, passed)] in measurement order). A bound never
    found is None: nothing passed down to start / 2**(max_levels-1), or everything passed up to the last."""
    best, worst, tried = None, None, []
    rate = start
    while len(tried) < max_levels and (best is None or worst is None):
        ok = passes(rate)
        tried.append((rate, ok))
        if ok:
            best = rate if best is None else max(best, rate)
            rate *= 2
        else:
            worst = rate if worst is None else min(worst, rate)
            rate /= 2
    steps = 0
    while best is not None and worst is not None and steps < bisect_steps and len(tried) < max_levels:
        mid = round3((best + worst) / 2)
        if not best < mid < worst:
            break
        ok = passes(mid)
        tried.append((mid, ok))
        steps += 1
        best, worst = (mid, worst) if ok else (best, mid)
    return best, worst, tried


def round3(rate: float) -> float:
    """Three significant figures: level names and reports stay readable."""
    digits = 2 - int(math.floor(math.log10(abs(rate))))
    return round(rate, digits)
