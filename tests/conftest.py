from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Tests never read or write the user's cache (calibrations, warm inductor caches): a report's roofline
# columns must not depend on whether this machine was calibrated before.
os.environ["BENCH_CACHE_DIR"] = tempfile.mkdtemp(prefix="aigc-bench-test-cache-")
atexit.register(shutil.rmtree, os.environ["BENCH_CACHE_DIR"], ignore_errors=True)


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the CLI as a user would: a separate process, exit code and both streams captured."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        env=env,
        timeout=timeout,
    )


def covering(*fixture_timeouts_s: float, own_s: float = 300) -> pytest.MarkDecorator:
    """A pytest-timeout mark for tests whose fixtures start subprocesses with these timeouts. pytest-timeout
    charges a fixture's set-up to the first test that requests it, so the global 300 s (pyproject.toml) would
    kill a sweep fixture before the sweep's own timeout could; `own_s` is the test's own share."""
    return pytest.mark.timeout(own_s + sum(fixture_timeouts_s))


TINY = """
name: {name}
task: text-generation
model:
  name: {model}
device: cpu
matrix:
  backend: [eager]
  precision: {precision}
  batch_size: {batch}
workload:
  prompt_tokens: 8
  new_tokens: 4
measure:
  warmup: 1
  min_iterations: {iters}
  min_time_s: {min_time}
  timeout_s: {timeout}
"""


def tiny_scenario(
    path: Path,
    name: str = "tiny",
    model: str = "tiny-gpt2",
    precision: str = "[fp32]",
    batch: str = "[1]",
    iters: int = 5,
    min_time: float = 0.0,
    timeout: float = 120,
) -> Path:
    path.write_text(
        textwrap.dedent(
            TINY.format(
                name=name,
                model=model,
                precision=precision,
                batch=batch,
                iters=iters,
                min_time=min_time,
                timeout=timeout,
            )
        )
    )
    return path


@pytest.fixture
def cli():
    return run_cli


# Every test is marked `unit` or `e2e` by what it runs (tests/markers.py); `make test-fast` = pytest -m "not e2e".
import markers  # noqa: E402
import shared_sweeps  # noqa: E402


def pytest_collection_modifyitems(config, items):
    markers.pytest_collection_modifyitems(config, items)
    # The first test set up with a shared sweep waits for every needed one (tests/shared_sweeps.py): each test
    # that reads one gets a timeout covering them all, on top of its own marks' share.
    shared_s = shared_sweeps.timeout_s(items)
    for item in items:
        if set(shared_sweeps.needed([item])):
            # the shared sweeps run two at a time (both cores) and their tests bound throughput by a second
            # clock: `make test` runs them alone, after the rest (docs/testing.md, "Two phases")
            item.add_marker(pytest.mark.serial)
            own = item.get_closest_marker("timeout")
            own_s = own.args[0] if own and own.args else 300
            item.add_marker(pytest.mark.timeout(own_s + shared_s))


def pytest_terminal_summary(terminalreporter):
    """Each shared sweep's own wall clock, beside --durations (where the whole batch is one test's set-up)."""
    done = shared_sweeps._DONE
    if done:
        terminalreporter.write_sep("-", "shared sweeps (wall s, two at a time)")
        for name, swept in sorted(done.items(), key=lambda kv: -kv[1].wall_s):
            terminalreporter.write_line(f"{swept.wall_s:7.1f}  {name} (exit {swept.proc.returncode})")
