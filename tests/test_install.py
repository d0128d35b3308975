"""The bundled scenario suites ship inside the package: `bench list`, `bench validate SUITE` and `bench run SUITE`
work from any directory, and a built wheel carries every suite file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from bench.suites import SUITES_DIR, bundled, resolve

from conftest import REPO, run_cli
from shared_sweeps import shared_sweep

SUITE_FILES = sorted(p.relative_to(SUITES_DIR).as_posix() for p in SUITES_DIR.rglob("*.y*ml"))


def test_every_suite_directory_of_the_checkout_is_bundled():
    # scenarios/ in the checkout is a link to the package's suites, so old paths keep working.
    assert (REPO / "scenarios").resolve() == SUITES_DIR
    assert {"cpu", "cuda", "cuda-quick", "examples", "ci", "ci-cuda"} <= set(bundled())
    assert "cpu/gpt2-decode.yaml" in SUITE_FILES


def test_suite_names_resolve_into_the_package_and_local_paths_win(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve("cpu") == SUITES_DIR / "cpu"
    assert resolve("cpu/gpt2-decode.yaml") == SUITES_DIR / "cpu" / "gpt2-decode.yaml"
    assert resolve("cpu/no-such.yaml") == Path("cpu/no-such.yaml")  # the error then names what the user typed
    assert resolve("no-such-suite") == Path("no-such-suite")
    (tmp_path / "cpu").mkdir()
    assert resolve("cpu") == Path("cpu")


def test_cli_outside_the_checkout_lists_and_validates_bundled_suites(tmp_path):
    listed = run_cli("list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    for name in SUITE_FILES:
        assert name in listed.stdout
    ok = run_cli("validate", "ci", "examples/tiny-gpt2.yaml", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.count("ok: ") == 2 and "ci-gpt2-decode" in ok.stdout and "tiny-gpt2-decode" in ok.stdout
    bad = run_cli("validate", "no-such-suite", cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "no-such-suite" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


# `bench run examples/tiny-gpt2.yaml --out run` from a directory holding neither: run with the other shared sweeps
bundled_suite_run = shared_sweep(
    "bundled_suite_run", {}, "examples/tiny-gpt2.yaml", "--no-fidelity", timeout_s=600, in_dir=True, workers=5
)


def test_bench_run_of_a_bundled_suite_from_another_directory(bundled_suite_run):
    proc = bundled_suite_run.proc
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (bundled_suite_run.dir / "examples").exists()  # the suite came from the package
    lines = (bundled_suite_run.out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 5  # 3 precisions × 2 batch sizes, one excluded
    # Library warnings go to the runs' logs, not the terminal.
    assert "Warning" not in proc.stderr and "warn" not in proc.stderr.lower()


def test_a_built_wheel_ships_the_suites_and_its_cli_finds_them(tmp_path):
    """Build the wheel from a copy of the sources (no build output in the checkout), install it into a target
    folder without dependencies (they come from this environment) and run its CLI from elsewhere."""
    src = tmp_path / "src"
    shutil.copytree(REPO / "bench", src / "bench", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("aigc_bench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [f for f in SUITE_FILES if f"bench/suites/{f}" not in names]
    assert not missing
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(tmp_path / "site"), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"), HF_HUB_OFFLINE="1")
    where = subprocess.run(
        [sys.executable, "-c", "import bench; print(bench.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(tmp_path / "site"))
    proc = subprocess.run(
        [sys.executable, "-m", "bench.cli", "validate", "cpu"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("ok: ") == len([f for f in SUITE_FILES if f.startswith("cpu/")])
    assert str(tmp_path / "site") in proc.stdout
