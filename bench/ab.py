"""Interleaved A/B: every point measured `repeats` times per arm, arms alternating round by round, so slow
periods of the machine fall on every arm alike. Each arm's directory is a normal run directory."""

from __future__ import annotations

import random
import subprocess
import sys
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from bench import environment, store
from bench.errors import BenchInputError
from bench.executors import Executor
from bench.executors import executor as make_executor
from bench.results import ENVIRONMENT_FILE, RESULTS_FILE
from bench.scenario import LoadedScenario
from bench.sweep import References, SweepResult, execute, plan, progress_bar, worker_env


@dataclass
class Arm:
    """One side of an interleaved comparison: a name (its run directory under the sweep's), the environment
    variables its workers get on top of the runner's, and optionally the directory they import `bench` from."""

    name: str
    env: dict[str, str] = field(default_factory=dict)
    code: Path | None = None

    def worker_env(self) -> dict[str, str]:
        return worker_env(self.env, self.code)


def check_arm_code(arm: Arm) -> None:
    """Refuse a code directory that is not a `bench` source tree, or that the workers would not import."""
    if arm.code is None:
        return
    source = f"--{arm.name}-code"
    if not (arm.code / "bench" / "worker.py").is_file():
        raise BenchInputError(source, f"{arm.code} has no bench/worker.py (give the root of an aigc-bench checkout)")
    probe = subprocess.run(
        [sys.executable, "-c", "import bench, sys; sys.stdout.write(bench.__file__)"],
        capture_output=True,
        text=True,
        env=arm.worker_env(),
        timeout=60,
    )
    imported = Path(probe.stdout.strip() or ".").resolve()
    if probe.returncode != 0 or not imported.is_relative_to(arm.code.resolve()):
        found = probe.stdout.strip() or probe.stderr.strip()
        raise BenchInputError(source, f"workers would import bench from {found!r}, not from {arm.code}")


def run_interleaved(
    scenarios: list[LoadedScenario],
    out_dir: Path,
    arms: list[Arm],
    repeats: int,
    device: str | None = None,
    console: Console | None = None,
    fidelity: bool = True,
    seed: int = 0,
    executor: Executor | None = None,
) -> dict[str, SweepResult]:
    """Measure every point `repeats` times per arm, alternating arms repeat by repeat (in a seeded random order
    within each round). Arm A's run directory is OUT/A; each record of round k carries
    `pair` = "<session>:<point>:<k>", which `bench compare` uses to compare the arms round by round.

    Fidelity compares every arm with one fp32 eager reference (OUT/references), made with the first arm's
    environment and code: a change that alters the outputs shows as lost fidelity in the other arm."""
    console = console or Console(stderr=True)
    executor = executor or make_executor()
    names = [a.name for a in arms]
    if len(set(names)) != len(names) or len(arms) < 2:
        raise BenchInputError("arms", f"need two or more differently named arms, got {names}")
    specs = plan(scenarios, repeats, device)
    out_dir = out_dir.resolve()  # workers of a code arm run elsewhere on sys.path, not in another directory
    with ExitStack() as locks:
        locks.enter_context(store.sweep_lock(out_dir))
        for arm in arms:
            check_arm_code(arm)
            locks.enter_context(store.sweep_lock(out_dir / arm.name))
            results = out_dir / arm.name / RESULTS_FILE
            if results.exists() and results.stat().st_size > 0:
                raise BenchInputError(
                    "--out",
                    f"{results} exists; choose another directory (an interleaved sweep "
                    "is not resumed: its rounds would no longer be adjacent in time)",
                )
        session = uuid.uuid4().hex[:12]
        envs = {a.name: a.worker_env() for a in arms}
        for arm in arms:
            (out_dir / arm.name / "logs").mkdir(parents=True, exist_ok=True)
            store.write_json(out_dir / arm.name / ENVIRONMENT_FILE, environment.collect(envs[arm.name], arm.code))
        rng = random.Random(seed)
        results = {a.name: SweepResult(out_dir=out_dir / a.name) for a in arms}
        references = References(out_dir / "references", executor)
        with progress_bar(console) as progress:
            bar = progress.add_task("interleaved", total=len(specs) * len(arms))
            for spec in specs:
                if fidelity:
                    references.attach(spec, out_dir / arms[0].name / "logs", envs[arms[0].name], progress, bar)
                order = list(arms)
                rng.shuffle(order)
                for arm in order:
                    progress.update(bar, description=f"{arm.name}: {spec.label()}")
                    records = execute(spec, executor, out_dir / arm.name / "logs", envs[arm.name])
                    for record in records:
                        record.pair = f"{session}:{record.point_id}:{spec.repeat}"  # serving: one per level
                    store.append_records(out_dir / arm.name / RESULTS_FILE, records)
                    results[arm.name].records.extend(records)
                    for record in records:
                        if record.status != "ok":
                            progress.console.print(
                                f"[yellow]{record.status}[/]: {arm.name}: {spec.label()}: {record.error}"
                            )
                    progress.advance(bar)
            progress.update(bar, description="interleaved sweep done")
    return results
