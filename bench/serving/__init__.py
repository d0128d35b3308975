"""Serving load tests: seeded arrivals and lengths, batching policies (a registry like backends), per-level
metrics with SLO attainment, goodput, saturation and the load generator's own lateness, and the rate sweep.

A scenario with a `serving:` section (bench.serving.spec.ServingSpec) runs each matrix point as one worker
process that serves every load level in turn (bench.serving.run) and returns one Record per level plus one
summary record (the highest sustainable rate). Definitions and rationale: docs/serving.md.
"""
