"""Checks of a serving scenario that need more than its own section (called by bench.scenario)."""

from __future__ import annotations

from typing import Any

from bench.errors import BenchInputError


def check_serving(path: str, sc: Any, points: list[dict[str, Any]]) -> tuple[Any, dict[str, Any]]:
    """Raise BenchInputError (file, field) for what a serving point could not run; return the scenario with
    its trace lengths drawn (bench.serving.trace) and the workload section the point is validated and recorded
    with: the length distributions' upper bounds."""
    from pathlib import Path

    from bench.serving.policies import POLICIES
    from bench.serving.trace import draw_all
    from bench.workloads import WORKLOADS
    from bench.workloads.text_generation import TextGeneration

    if sc.serving is None:
        raise BenchInputError(path, "batching policies need a serving: section", "matrix.batching")
    if not issubclass(WORKLOADS[sc.task], TextGeneration):  # requests are token streams of a text generator
        raise BenchInputError(path, f"serving load tests run {TextGeneration.task}, not {sc.task}", "serving")
    if sc.workload:
        raise BenchInputError(
            path, "a serving scenario takes its lengths from serving.prompt_tokens and serving.new_tokens", "workload"
        )
    names = sc.matrix.batching or ["none"]
    for point in points:
        allowed = POLICIES[point["batching"]].backends
        if allowed is not None and point["backend"] not in allowed:
            raise BenchInputError(
                path,
                f"batching {point['batching']!r} cannot run on backend {point['backend']!r} "
                f"(it runs on: {', '.join(allowed)}); exclude that combination",
                f"matrix.batching[{names.index(point['batching'])}]",
            )
    serving = draw_all(sc.serving, Path(path).parent, sc.measure.seed, path)
    sc = sc.model_copy(update={"serving": serving})
    return sc, {"prompt_tokens": serving.prompt_tokens.upper, "new_tokens": serving.new_tokens.upper}
