"""Compatibility names: the runner was split into bench.sweep (plan, run directory, resume, references),
bench.ab (interleaved A/B) and bench.executors (where a RunSpec runs: local process groups)."""

from bench.ab import Arm, check_arm_code, run_interleaved  # noqa: F401
from bench.sweep import SweepResult, check_device, plan, run_sweep, worker_env  # noqa: F401
