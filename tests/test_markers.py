"""tests/markers.py against a hand-classified test file, collected by a real pytest in a subprocess."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

from conftest import REPO

SAMPLE = """
import subprocess

import pytest


def spawn():
    return subprocess.run(["true"])


def indirect():
    return spawn()


@pytest.fixture
def swept():
    from bench.runner import run_sweep  # noqa: F401
    return 1


def test_plain():
    assert 1 + 1 == 2


def test_uses_subprocess_through_two_helpers():
    indirect()


def test_uses_a_fixture_that_sweeps(swept):
    assert swept


def test_uses_tmp_path_only(tmp_path):
    assert tmp_path.exists()


@pytest.mark.unit
def test_marked_unit_wins():
    spawn()


@pytest.mark.parametrize("n", [1, 2])
def test_parametrized_cli(n):
    run_cli = None  # a local name is not a call of the CLI
    assert n and run_cli is None
"""


def _collect(root, marker):
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m", marker, "tests"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode in (0, 5), proc.stdout + proc.stderr  # 5: nothing collected
    return sorted(line.split("::", 1)[1] for line in proc.stdout.splitlines() if "::" in line)


def test_markers_classify_by_what_a_test_runs(tmp_path):
    tests = tmp_path / "tests"
    tests.mkdir()
    shutil.copy(REPO / "tests" / "markers.py", tests / "markers.py")
    (tests / "conftest.py").write_text("from markers import pytest_collection_modifyitems  # noqa: F401\n")
    (tests / "test_sample.py").write_text(textwrap.dedent(SAMPLE))
    (tmp_path / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text())  # registers the markers
    assert _collect(tmp_path, "e2e") == ["test_uses_a_fixture_that_sweeps", "test_uses_subprocess_through_two_helpers"]
    assert _collect(tmp_path, "not e2e") == [
        "test_marked_unit_wins",
        "test_parametrized_cli[1]",
        "test_parametrized_cli[2]",
        "test_plain",
        "test_uses_tmp_path_only",
    ]
