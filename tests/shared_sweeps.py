"""Sweeps that test modules read, run once per session and two at a time, inside the set-up of the first test
that needs one, so that no other test runs while they do (docs/testing.md, "Shared sweeps").

A module declares its sweep when it is imported:

    sd_run = shared_sweep("sd_run", {"s.yaml": SCENARIO}, timeout_s=600)

which is a session fixture named `sd_run` returning a `Swept`. When the first such fixture is set up, every
declared sweep that a collected test uses starts (`bench run` of its files, each in its own directory), at most
PARALLEL at once; the fixture returns once all of them ended. Each sweep keeps its own subprocess timeout and its
own wall clock (`wall_s`, around its CLI process only). A sweep that failed fails only the tests that read it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PARALLEL = 2  # the CI machine's cores: each sweep is one worker process at a time, mostly one busy thread


@dataclass(frozen=True)
class Sweep:
    name: str
    scenarios: dict[str, str]  # file name → YAML text, written into the sweep's directory
    args: tuple[str, ...]  # after `bench run FILES` (more scenarios, options)
    timeout_s: float
    env: dict[str, str] = field(default_factory=dict)  # on top of the tests' environment
    pythonpath: tuple[str, ...] = ()  # prepended to PYTHONPATH (a workload module defined in tests/)
    in_dir: bool = False  # run from the sweep's own directory (files and --out relative), not the checkout
    workers: int = 1  # about how many worker processes it starts: the longest sweeps start first


@dataclass
class Swept:
    """A finished sweep: its directory (scenario files; the run directory is `out`), the CLI's result, and the
    test's own wall clock around that CLI process."""

    dir: Path
    out: Path
    proc: subprocess.CompletedProcess
    wall_s: float

    def check(self) -> Swept:
        assert self.proc.returncode == 0, self.proc.stdout[-3000:] + self.proc.stderr[-3000:]
        return self


DECLARED: dict[str, Sweep] = {}
_DONE: dict[str, Swept] = {}


def shared_sweep(
    name: str,
    scenarios: dict[str, str],
    *args: str,
    timeout_s: float,
    env: dict[str, str] | None = None,
    pythonpath: tuple[str, ...] = (),
    in_dir: bool = False,
    workers: int = 1,
):
    """Declare a shared sweep, `bench run SCENARIO_FILES ARGS --out run`; the session fixture (named `name`)
    that returns its `Swept`."""
    assert name not in DECLARED, f"shared sweep {name!r} declared twice"
    DECLARED[name] = Sweep(
        name, dict(scenarios), tuple(args), timeout_s, dict(env or {}), tuple(pythonpath), in_dir, workers
    )

    @pytest.fixture(scope="session", name=name)
    def swept(request, tmp_path_factory) -> Swept:
        if name not in _DONE:
            _run_needed(request.session, tmp_path_factory, name)
        return _DONE[name]

    return swept


def needed(items) -> list[str]:
    """The declared sweeps these collected tests use, in declaration order."""
    used = set().union(*(getattr(item, "fixturenames", ()) for item in items)) if items else set()
    return [n for n in DECLARED if n in used]


def timeout_s(items) -> float:
    """What the set-up of the first test using a shared sweep may take: every needed sweep one after another."""
    return sum(DECLARED[n].timeout_s for n in needed(items))


def _run_needed(session, tmp_path_factory, first: str) -> None:
    todo = [n for n in dict.fromkeys([first, *needed(session.items)]) if n not in _DONE]
    todo.sort(key=lambda n: -DECLARED[n].workers)  # longest first: two lanes end closer together
    dirs = {n: tmp_path_factory.mktemp(n) for n in todo}
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        done = dict(zip(todo, pool.map(lambda n: _run(DECLARED[n], dirs[n]), todo)))
    _DONE.update(done)


def _run(sweep: Sweep, d: Path) -> Swept:
    files = []
    for file_name, text in sweep.scenarios.items():
        (d / file_name).write_text(text)
        files.append(file_name if sweep.in_dir else str(d / file_name))
    out = "run" if sweep.in_dir else str(d / "run")
    # one torch thread per lane: two 2-thread workers on two cores spend their time in each other's OpenMP
    # barriers (a tiny-sd call 3x slower, its first call up to 40x, measured 2026-12-01; docs/testing.md)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.update(sweep.env)
    if sweep.pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([*sweep.pythonpath, *filter(None, [env.get("PYTHONPATH")])])
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.cli", "run", *files, *sweep.args, "--out", out],
            capture_output=True,
            text=True,
            cwd=d if sweep.in_dir else REPO,
            env=env,
            timeout=sweep.timeout_s,
        )
    except subprocess.TimeoutExpired as exc:  # this sweep's tests fail with its output; the others go on
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        proc = subprocess.CompletedProcess(exc.cmd, -9, out, err + f"\n{sweep.name}: timed out after {exc.timeout} s")
    return Swept(d, d / "run", proc, time.perf_counter() - t0)
