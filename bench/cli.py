"""Commands only: parse, call, map errors to exit codes (0 ok, 1 a run failed, 2 invalid input)."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from bench.errors import BenchInputError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="aigc-bench: performance benchmarks for generative models.",
)
# Wide enough for the summary table when output goes to a file or a CI log.
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


@app.command()
def run(
    paths: list[str] = typer.Argument(..., help="scenario files or directories of them"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="run directory (default reports/run-<UTC time>)"),
    device: Optional[str] = typer.Option(None, help="override every scenario's device: auto | cpu | cuda[:N]"),
    repeats: int = typer.Option(1, min=1, help="independent processes per matrix point"),
    resume: bool = typer.Option(False, "--resume", help="skip runs already recorded in --out"),
    retry_failed: bool = typer.Option(
        False,
        "--retry-failed",
        help="resume, and run failed and timed-out points again (their old records move to a side file)",
    ),
    fidelity: bool = typer.Option(
        True, "--fidelity/--no-fidelity", help="compare every run's outputs with the fp32 eager reference"
    ),
    worker_memory_limit: Optional[str] = typer.Option(
        None,
        "--worker-memory-limit",
        metavar="SIZE",
        help="address-space limit of each worker, e.g. 8G (CPU runs; CUDA maps far more virtual memory)",
    ),
    executor_name: str = typer.Option("local", "--executor", help="where runs execute: local | ray"),
    address: Optional[str] = typer.Option(
        None,
        "--address",
        help="Ray cluster address (--executor ray; default $RAY_ADDRESS, else a Ray started here); ships this checkout",
    ),
    max_infra_retries: int = typer.Option(
        2,
        "--max-infra-retries",
        min=0,
        help="--executor ray: runs again a point whose node or Ray worker was lost, at most this many times",
    ),
    gpus_per_point: int = typer.Option(
        1,
        "--gpus-per-point",
        min=1,
        help="--executor ray: GPUs each CUDA point reserves together (a placement group when more than 1)",
    ),
) -> None:
    """Run every point of every scenario, each in a fresh process; append records to results.jsonl."""
    import re

    from bench.executors import executor
    from bench.results import RESULTS_FILE, read_records
    from bench.scenario import DEVICE_PATTERN, load_all
    from bench.store import RecordWriteError
    from bench.summary import markdown, rich_table
    from bench.sweep import run_sweep

    if device is not None and not re.match(DEVICE_PATTERN, device):
        raise BenchInputError("--device", f"{device!r} is not auto, cpu, cuda or cuda:N")
    for flag, given in (("--resume", resume), ("--retry-failed", retry_failed)):
        if given and out_dir is None:
            raise BenchInputError(flag, "needs --out naming the sweep to continue")
    limit = _size(worker_memory_limit, "--worker-memory-limit") if worker_memory_limit else None
    options: dict = {"memory_limit_bytes": limit}
    if executor_name == "ray":
        options |= dict(address=address, max_infra_retries=max_infra_retries, gpus_per_point=gpus_per_point)
    elif address is not None:
        raise BenchInputError("--address", "names a Ray cluster: use it with --executor ray")
    runner = executor(executor_name, **options)
    scenarios = load_all(paths)
    if out_dir is None:
        out_dir = Path("reports") / f"run-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    try:
        result = run_sweep(
            scenarios,
            out_dir,
            repeats=repeats,
            device=device,
            resume=resume,
            console=err,
            fidelity=fidelity,
            retry_failed=retry_failed,
            executor=runner,
        )
    except RecordWriteError as exc:
        err.print(
            f"error: {exc}; `bench run --resume --out {out_dir}` continues once there is room",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from None
    records = read_records(out_dir / RESULTS_FILE)
    from bench.serving import summary as serving

    plain = [r for r in records if r.serving is None]  # serving levels have their own table
    (out_dir / "summary.md").write_text(f"# Summary of {out_dir}\n\n" + markdown(plain) + serving.markdown(records))
    if plain or not serving.serving_records(records):
        out.print(rich_table(plain, title=f"{out_dir} ({len(result.records)} run now, {result.skipped} resumed)"))
    if serving.serving_records(records):
        out.print(serving.rich_table(records))
    for alert in serving.alerts(records):
        out.print(f"[red]SLO alert[/]: {alert}")
    out.print(f"results: {out_dir / RESULTS_FILE}")
    raise typer.Exit(result.exit_code)


def _size(text: str, option: str) -> int:
    """Bytes of a size such as 512M, 8G or 1000000."""
    units = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    number, unit = text.strip().upper().rstrip("IB").rstrip("B"), ""
    if number and number[-1] in units:
        number, unit = number[:-1], number[-1]
    try:
        value = float(number) * units[unit]
    except ValueError:
        raise BenchInputError(option, f"{text!r} is not a size such as 512M or 8G") from None
    if not 2**20 <= value < 2**60:
        raise BenchInputError(option, f"{text!r} is outside 1M .. 1E")
    return int(value)


def _env_pairs(values: list[str], option: str) -> dict[str, str]:
    env = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key or not key.replace("_", "").isalnum():
            raise BenchInputError(option, f"{value!r} is not KEY=VALUE")
        env[key] = val
    return env


@app.command()
def ab(
    paths: list[str] = typer.Argument(..., help="scenario files or directories of them"),
    out_dir: Optional[Path] = typer.Option(
        None, "--out", help="directory of both run directories (default reports/ab-<UTC time>)"
    ),
    repeats: int = typer.Option(
        8,
        min=2,
        help="rounds: repeats per arm and point, alternating arms (a paired "
        "comparison has rounds − 1 degrees of freedom)",
    ),
    device: Optional[str] = typer.Option(None, help="override every scenario's device: auto | cpu | cuda[:N]"),
    baseline_code: Optional[Path] = typer.Option(
        None, "--baseline-code", help="checkout whose bench the baseline's workers import"
    ),
    current_code: Optional[Path] = typer.Option(
        None, "--current-code", help="checkout whose bench the current side's workers import"
    ),
    baseline_env: list[str] = typer.Option([], "--baseline-env", help="KEY=VALUE for the baseline's workers"),
    current_env: list[str] = typer.Option([], "--current-env", help="KEY=VALUE for the current side's workers"),
    seed: int = typer.Option(0, help="seed of the order of the two arms within each round"),
    fidelity: bool = typer.Option(
        True, "--fidelity/--no-fidelity", help="compare both arms' outputs with the baseline's fp32 eager reference"
    ),
) -> None:
    """Interleaved A/B: baseline and current repeats alternate (OUT/baseline, OUT/current), so slow periods of
    the machine hit both; then `bench compare OUT/baseline OUT/current` compares them round by round."""
    import re

    from bench.ab import Arm, run_interleaved
    from bench.results import RESULTS_FILE, read_records
    from bench.scenario import DEVICE_PATTERN, load_all
    from bench.summary import markdown

    if device is not None and not re.match(DEVICE_PATTERN, device):
        raise BenchInputError("--device", f"{device!r} is not auto, cpu, cuda or cuda:N")
    arms = [
        Arm("baseline", _env_pairs(baseline_env, "--baseline-env"), baseline_code),
        Arm("current", _env_pairs(current_env, "--current-env"), current_code),
    ]
    scenarios = load_all(paths)
    if out_dir is None:
        out_dir = Path("reports") / f"ab-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    from bench.store import RecordWriteError

    try:
        results = run_interleaved(
            scenarios, out_dir, arms, repeats, device=device, console=err, fidelity=fidelity, seed=seed
        )
    except RecordWriteError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    for arm in arms:
        arm_dir = out_dir / arm.name
        (arm_dir / "summary.md").write_text(
            f"# Summary of {arm_dir}\n\n" + markdown(read_records(arm_dir / RESULTS_FILE))
        )
        done = results[arm.name].records
        bad = sum(r.status in ("failed", "timeout") for r in done)
        out.print(f"{arm.name}: {len(done)} run(s), {bad} failed: {out_dir / arm.name}")
    out.print(f"compare: bench compare {out_dir / 'baseline'} {out_dir / 'current'}")
    raise typer.Exit(max(r.exit_code for r in results.values()))


@app.command()
def validate(paths: list[str] = typer.Argument(..., help="scenario files or directories of them")) -> None:
    """Check scenario files without running them (the model config and sequence limits included)."""
    from bench.scenario import load_scenario, scenario_files

    failed = False
    for path in scenario_files(paths):
        try:
            ls = load_scenario(path)
        except BenchInputError as exc:
            err.print(f"error: {exc}", markup=False, highlight=False)
            failed = True
            continue
        out.print(
            f"ok: {path} ({ls.scenario.name}: {len(ls.points)} point(s), model {ls.scenario.model.name})",
            markup=False,
            highlight=False,
        )
    raise typer.Exit(2 if failed else 0)


@app.command("list")
def list_(
    scenario_dir: Optional[Path] = typer.Option(
        None, help="list the scenario files here instead of the bundled suites"
    ),
) -> None:
    """Bundled model architectures and scenario suites (`bench run SUITE` runs one from any directory)."""
    from rich.table import Table

    from bench import models
    from bench.workloads import WORKLOADS

    table = Table(title="bundled models (random weights offline; `weights: pretrained` needs local files)")
    for col in ("name", "type", "parameters", "max positions", "tasks", "what", "pretrained from"):
        table.add_column(col)
    for name, (hub_id, what) in models.BUNDLED.items():
        config = models.load_config(models.resolve(name))
        tasks = [w for w in WORKLOADS.values() if w.check_model(w.Spec(), config) is None]
        if tasks:
            params = tasks[0].parameter_count(config)
        else:
            from transformers import AutoModel

            params = models.parameter_count(config, AutoModel)
        table.add_row(
            name,
            config.model_type,
            f"{params / 1e6:,.1f}M",
            str(models.max_positions(config) or "-"),
            ", ".join(w.task for w in tasks) or "-",
            what,
            hub_id or "-",
        )
    out.print(table)
    from bench.suites import SUITES_DIR

    root = scenario_dir if scenario_dir is not None else SUITES_DIR
    files = sorted(root.rglob("*.y*ml")) if root.is_dir() else []
    stable = Table(
        title=f"scenarios in {scenario_dir}"
        if scenario_dir is not None
        else "bundled scenario suites (bench run SUITE or SUITE/FILE)"
    )
    stable.add_column("file")
    stable.add_column("name")
    stable.add_column("task")
    stable.add_column("model")
    from bench.scenario import read_yaml

    for f in files:
        try:
            data = read_yaml(f)
            stable.add_row(
                str(f if scenario_dir is not None else f.relative_to(root)),
                str(data.get("name", "?")),
                str(data.get("task", "?")),
                str((data.get("model") or {}).get("name", "?")),
            )
        except BenchInputError as exc:
            stable.add_row(str(f if scenario_dir is not None else f.relative_to(root)), "invalid", str(exc), "")
    out.print(stable)


@app.command()
def report(
    run_dirs: list[Path] = typer.Argument(
        ...,
        metavar="RUN_DIR",
        help="run directories (each with results.jsonl); the first is what the others are compared with",
    ),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="where to write (default: FIRST_RUN_DIR/report)"),
    baseline: Optional[list[str]] = typer.Option(
        None,
        "--baseline",
        metavar="KEY=VALUE",
        help="baseline point fields, repeatable: backend=…, precision=…, "
        "batch_size=… (default precision=fp32 backend=eager)",
    ),
    min_cosine: float = typer.Option(
        0.999,
        "--min-cosine",
        min=0.0,
        max=1.0,
        help="fidelity bound of the verdict's 'fastest within' pick (worst cosine vs fp32 eager)",
    ),
) -> None:
    """Write report.md, report.html, results.csv and charts/*.png from one or more run directories."""
    from bench.report import write_report

    files = write_report(run_dirs, out_dir, baseline or [], min_cosine)
    for path in (files.markdown, files.html, files.csv):
        out.print(f"wrote {path}", markup=False, highlight=False)
    out.print(f"wrote {len(files.charts)} chart(s) in {files.out_dir / 'charts'}", markup=False, highlight=False)


@app.command()
def calibrate(
    device: str = typer.Option("auto", help="auto | cpu | cuda[:N]"),
    quick: bool = typer.Option(
        False, "--quick", help="a few small measurements (seconds; for tests), not a ceiling to quote"
    ),
    force: bool = typer.Option(False, "--force", help="measure again even when this device has a stored calibration"),
) -> None:
    """Measure memory bandwidth and matmul throughput per dtype; stored per device name and reused by runs and
    reports (roofline efficiency)."""
    import re

    from bench.roofline import calibrate as cal
    from bench.scenario import DEVICE_PATTERN

    if not re.match(DEVICE_PATTERN, device):
        raise BenchInputError("--device", f"{device!r} is not auto, cpu, cuda or cuda:N")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise BenchInputError("--device", f"{device}: torch sees no CUDA device on this machine")
        if ":" in device and int(device.split(":")[1]) >= torch.cuda.device_count():
            raise BenchInputError("--device", f"{device}: torch sees {torch.cuda.device_count()} CUDA device(s)")
    result, path, reused = cal.calibrate(device, quick=quick, force=force)
    out.print(cal.calibration_table(result))
    if reused:
        out.print(
            f"reused {path} (measured {result.measured_at}; --force measures again)", markup=False, highlight=False
        )
    else:
        out.print(f"measured in {result.seconds:.1f} s; stored {path}", markup=False, highlight=False)


@app.command()
def capabilities() -> None:
    """The backend × task × device × precision table (markdown). Unsupported points are recorded as such."""
    from bench.backends import capability_markdown

    sys.stdout.write(capability_markdown())


@app.command()
def compare(
    baseline: str = typer.Argument(..., metavar="BASELINE", help="run directory or saved baseline name"),
    current: str = typer.Argument(..., metavar="CURRENT", help="run directory or saved baseline name"),
    threshold: Optional[str] = typer.Option(None, help="unchanged zone, e.g. 5% (default 5%, or the config's)"),
    config: Optional[Path] = typer.Option(None, "--config", help="gate config file (see docs/gate.md)"),
    fmt: str = typer.Option("md", "--format", help="what to print: md | json"),
    allow_env_change: bool = typer.Option(
        False, "--allow-env-change", help="compare even when GPU, driver, CUDA, torch or ONNX Runtime differ"
    ),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="also write compare.md and compare.json here"),
    baseline_dir: Optional[Path] = typer.Option(
        None, "--baseline-dir", help="where saved baselines live (default baselines/)"
    ),
) -> None:
    """Regression gate: exit 0 pass (improvements included; inconclusive per gate.yaml), 1 regression, failure,
    a result the gate could not judge that its `inconclusive` policy fails, or a serving level's SLO alert that
    its `slo_alerts` policy fails (default: one the baseline did not have), 2 invalid input."""
    import json

    from bench.gate.compare import compare as run_gate
    from bench.gate.compare import load_side
    from bench.gate.config import load_config
    from bench.gate.render import to_json, to_markdown

    if fmt not in ("md", "json"):
        raise BenchInputError("--format", f"{fmt!r} is not md or json")
    gate_config = load_config(config, threshold)
    result = run_gate(
        load_side(baseline, baseline_dir),
        load_side(current, baseline_dir),
        gate_config,
        allow_env_change=allow_env_change,
    )
    markdown, data = to_markdown(result), to_json(result)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "compare.md").write_text(markdown, encoding="utf-8")
        (out_dir / "compare.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    sys.stdout.write(markdown if fmt == "md" else json.dumps(data, indent=2) + "\n")
    if result.outcome != "pass":
        sys.stderr.write(f"gate: {result.outcome}\n")
    raise typer.Exit(result.exit_code)


@app.command("session-noise")
def session_noise(
    runs: list[str] = typer.Argument(..., metavar="RUN...", help="3 or more runs of the same code, oldest first"),
    config: Optional[Path] = typer.Option(None, "--config", help="gate config file (its statistic, combine, ...)"),
    baseline_dir: Optional[Path] = typer.Option(
        None, "--baseline-dir", help="where saved baselines live (default baselines/)"
    ),
) -> None:
    """Calibrate the gate's `session_noise` on this runner: compare each run with the next (A/A) and print the
    shift per run that the gate's own variances miss, as a gate.yaml line (docs/gate.md, "4. Calibrating
    `session_noise`")."""
    from bench.gate import calibration
    from bench.gate.compare import load_side
    from bench.gate.config import load_config

    found, results = calibration.calibrate([load_side(run, baseline_dir) for run in runs], load_config(config))
    failed = sum(r.exit_code == 1 for r in results)
    lines = [
        f"{found.comparisons} A/A comparisons (each run with the next), {found.estimates} time-metric estimates.",
        f"A/A z-scores (log ratio / se): sd {found.z_sd:.2f} without a session term, "
        f"{found.z_sd_calibrated:.2f} with it (about 1 when calibrated, a little more with few degrees of freedom); "
        f"the gate failed {failed} of "
        f"{found.comparisons} without it.",
    ]
    if found.comparisons < 5:
        lines.append(f"Few comparisons ({found.comparisons}): a rough estimate; 10 or more runs pin it down.")
    lines.append(found.gate_yaml)
    out.print("\n".join(lines), markup=False, highlight=False)


baseline_app = typer.Typer(no_args_is_help=True, help="Save and list baselines for `bench compare`.")
app.add_typer(baseline_app, name="baseline")


@baseline_app.command("save")
def baseline_save(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR"),
    name: str = typer.Argument(..., metavar="NAME"),
    directory: Optional[Path] = typer.Option(
        None, "--dir", help="baselines folder (default baselines/ or $BENCH_BASELINE_DIR)"
    ),
    force: bool = typer.Option(False, "--force", help="replace a baseline of the same name"),
) -> None:
    """Copy a run directory's records and environment into the baselines folder under NAME."""
    from bench.gate import baselines

    saved = baselines.save(run_dir, name, directory, force)
    for warning in saved.warnings:
        err.print(f"warning: {warning}", markup=False, highlight=False)
    out.print(
        f"saved baseline {name!r} in {saved.path} ({saved.meta['points']} point(s), "
        f"{saved.meta['ok_records']} ok record(s))",
        markup=False,
        highlight=False,
    )


@baseline_app.command("list")
def baseline_list(
    directory: Optional[Path] = typer.Option(
        None, "--dir", help="baselines folder (default baselines/ or $BENCH_BASELINE_DIR)"
    ),
) -> None:
    """The saved baselines: name, when measured, commit, device, points, repeats."""
    from rich.table import Table

    from bench.gate import baselines

    found = baselines.list_saved(directory)
    where = directory if directory is not None else baselines.default_dir()
    if not found:
        out.print(f"no saved baselines in {where}", markup=False, highlight=False)
        return
    table = Table(title=f"baselines in {where}")
    for col in ("name", "measured", "saved", "commit", "device", "scenarios", "points", "repeats"):
        table.add_column(col, overflow="fold")
    for path, meta in found:
        repeats = ", ".join(f"{k}×{v}" for k, v in (meta.get("repeats") or {}).items())
        table.add_row(
            meta.get("name", path.name),
            str(meta.get("measured_at") or "-"),
            str(meta.get("saved_at") or "-"),
            str(meta.get("git_commit") or "-")[:10],
            str(meta.get("device") or "-"),
            ", ".join(meta.get("scenarios") or []),
            str(meta.get("points", "-")),
            repeats or "-",
        )
    out.print(table)


@app.command()
def export(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR"),
    fmt: str = typer.Option("pytest-benchmark", "--format", help="pytest-benchmark"),
    out_file: Optional[Path] = typer.Option(None, "--out", help="write here instead of stdout"),
) -> None:
    """Results in another tool's format (pytest-benchmark JSON, for tools that ingest it)."""
    import json

    from bench.export import FORMATS, pytest_benchmark

    if fmt not in FORMATS:
        raise BenchInputError("--format", f"{fmt!r} is not one of {', '.join(FORMATS)}")
    doc, skipped = pytest_benchmark(run_dir)
    text = json.dumps(doc, indent=2) + "\n"
    if skipped:
        err.print(f"note: {skipped} point(s) without an ok repeat left out", markup=False, highlight=False)
    if out_file is None:
        sys.stdout.write(text)
    else:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(text, encoding="utf-8")
        out.print(f"wrote {out_file} ({len(doc['benchmarks'])} benchmark(s))", markup=False, highlight=False)


def main() -> None:
    # Standalone mode: typer/click turn usage errors into exit code 2 and `typer.Exit` into its code;
    # our own input errors arrive here as BenchInputError.
    try:
        app()
    except BenchInputError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
