import textwrap

import pytest

from bench.errors import BenchInputError
from bench.scenario import load_scenario, scenario_files

from conftest import REPO, tiny_scenario


def write(tmp_path, text, name="s.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_matrix_expansion_with_exclude_and_scalars(tmp_path):
    p = write(
        tmp_path,
        """
        name: m
        task: text-generation
        model: {name: tiny-gpt2}
        matrix:
          backend: eager            # a scalar is a one-item list
          precision: [fp32, bf16, fp16]
          batch_size: [1, 4]
        exclude:
          - {precision: bf16, batch_size: 4}
          - {precision: fp16}
        workload: {prompt_tokens: 8, new_tokens: 4}
    """,
    )
    ls = load_scenario(p)
    got = [(pt["backend"], pt["precision"], pt["batch_size"]) for pt in ls.points]
    assert got == [("eager", "fp32", 1), ("eager", "fp32", 4), ("eager", "bf16", 1)]


def test_defaults_and_duplicates(tmp_path):
    p = write(
        tmp_path,
        """
        name: d
        task: text-generation
        model: {name: tiny-llama}
        matrix: {precision: [fp32, fp32], batch_size: [2, 2]}
    """,
    )
    ls = load_scenario(p)
    assert ls.points == [{"backend": "eager", "precision": "fp32", "batch_size": 2}]
    assert ls.workload.model_dump() == {"prompt_tokens": 128, "new_tokens": 64}
    assert ls.scenario.measure.min_iterations == 10 and ls.scenario.device == "auto"


def test_run_specs_repeats_and_ids(tmp_path):
    ls = load_scenario(tiny_scenario(tmp_path / "t.yaml", precision="[fp32, bf16]"))
    specs = ls.run_specs(repeats=3, device="cpu")
    assert len(specs) == 6
    assert len({s.run_id for s in specs}) == 6
    assert len({s.point_id for s in specs}) == 2
    again = load_scenario(tmp_path / "t.yaml").run_specs(repeats=3, device="cpu")
    assert [s.run_id for s in again] == [s.run_id for s in specs]  # stable: resume depends on it
    assert specs[0].model_kind == "bundled" and specs[0].model_location.endswith("tiny-gpt2.json")


def test_local_model_directory_relative_to_scenario(tmp_path):
    model_dir = tmp_path / "models" / "mine"
    model_dir.mkdir(parents=True)
    (model_dir / "config.json").write_text((REPO / "bench/models/configs/tiny-llama.json").read_text())
    sub = tmp_path / "scen"
    sub.mkdir()
    p = tiny_scenario(sub / "x.yaml", model="../models/mine")
    ls = load_scenario(p)
    assert ls.model_kind == "directory" and ls.model_location == str(model_dir.resolve())


def test_exclude_with_unknown_key(tmp_path):
    p = write(
        tmp_path,
        """
        name: e
        task: text-generation
        model: {name: tiny-gpt2}
        exclude: [{batch: 1}]
    """,
    )
    with pytest.raises(BenchInputError) as exc:
        load_scenario(p)
    assert exc.value.field == "exclude[0].batch"


def test_directory_lists_yaml_files_sorted(tmp_path):
    for n in ("b.yaml", "a.yml", "c.txt"):
        (tmp_path / n).write_text("x: 1")
    assert [f.name for f in scenario_files([tmp_path])] == ["a.yml", "b.yaml"]


@pytest.mark.parametrize("suite", ["cpu", "cuda", "cuda-quick", "cuda-check", "examples", "ci", "ci-cuda"])
def test_bundled_scenarios_are_valid(suite):
    from bench.suites import SUITES_DIR

    files = scenario_files([SUITES_DIR / suite])
    assert files, suite
    for f in files:
        ls = load_scenario(f)  # raises BenchInputError (file, field) on an invalid one
        specs = ls.run_specs()
        assert specs and all(s.scenario == ls.scenario.name for s in specs), f


def test_run_id_covers_measure_settings_but_not_the_time_limit(tmp_path):
    base = load_scenario(tiny_scenario(tmp_path / "a.yaml")).run_specs(device="cpu")[0]
    for change in ({"warmup": 2}, {"min_iterations": 6}, {"min_time_s": 1.0}, {"max_cv": 0.2}, {"seed": 1}):
        other = base.model_copy(update={"measure": base.measure.model_copy(update=change)})
        assert other.run_id != base.run_id and other.point_id == base.point_id, change
    longer = base.model_copy(update={"measure": base.measure.model_copy(update={"timeout_s": 999.0})})
    assert longer.run_id == base.run_id


def test_duplicate_key_names_key_and_lines(tmp_path):
    p = write(
        tmp_path,
        """
        name: d
        task: text-generation
        model: {name: tiny-gpt2}
        matrix:
          precision: [fp32]
          batch_size: [1]
          precision: [bf16]
    """,
    )
    with pytest.raises(BenchInputError) as exc:
        load_scenario(p)
    assert exc.value.field == "matrix.precision" and "at line 8 (first at line 6)" in exc.value.message


def test_the_largest_accepted_values_reach_the_worker_unchanged(tmp_path):
    """One schema: the worker parses its RunSpec with the same models, so what validation accepts it accepts;
    the seed bound is what torch's generators take."""
    import torch

    from bench.scenario import MAX_BATCH_SIZE, MAX_INT, RunSpec

    p = write(
        tmp_path,
        f"""
        name: big
        task: text-generation
        model: {{name: tiny-gpt2}}
        matrix: {{batch_size: [{MAX_BATCH_SIZE}]}}
        measure: {{warmup: 100000, min_iterations: 10000000, min_time_s: 86400, timeout_s: 604800, seed: {MAX_INT}}}
    """,
    )
    (spec,) = load_scenario(p).run_specs(device="cpu")
    assert RunSpec.model_validate_json(spec.model_dump_json()) == spec
    torch.Generator().manual_seed(spec.measure.seed)
    torch.manual_seed(spec.measure.seed)
