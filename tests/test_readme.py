import re

from bench.backends import capability_markdown

from conftest import REPO


def test_readme_capability_matrix_matches_code():
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- capabilities:begin -->\n(.*?)<!-- capabilities:end -->", text, re.S)
    assert block, "README lost its capability block"
    assert block.group(1) == capability_markdown()


def test_readme_shows_the_two_commands_and_metric_names():
    text = (REPO / "README.md").read_text()
    for needle in ("make bench", "make test", "ttft_s", "tpot_s", "output_tokens_per_s", "host_rss_peak_bytes"):
        assert needle in text


def test_readme_gate_config_example_is_valid(tmp_path):
    from bench.gate.config import load_config

    text = (REPO / "README.md").read_text()
    block = re.search(r"\*\*Gate config\*\*.*?```yaml\n(.*?)```", text, re.S)
    assert block, "README lost its gate config example"
    path = tmp_path / "gate.yaml"
    path.write_text(block.group(1))
    config = load_config(path)
    assert config.scenarios["ci-gpt2-decode"].metrics["tpot_s"].threshold == 0.03
    for needle in ("bench compare", "Benjamini–Hochberg", "make bench-ci", "BENCH_INJECT_SLOWDOWN"):
        assert needle in text
