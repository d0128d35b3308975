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
