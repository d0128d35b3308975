"""The report names the node of records an executor ran elsewhere (Ray: details.node) and says when points ran
on several device models."""

from __future__ import annotations

from bench.report.points import device_labels, device_note
from bench.results import Record


def record(device_name: str, host: str | None) -> Record:
    details = {"node": {"hostname": host, "ray_node_id": f"id-{host}"}} if host else {}
    return Record(
        run_id="r",
        point_id="p",
        scenario="s",
        scenario_file="s.yaml",
        model="m",
        weights="random",
        task="text-generation",
        backend="eager",
        precision="fp32",
        batch_size=1,
        device="cuda:0",
        device_name=device_name,
        status="ok",
        details=details,
    )


def test_local_records_keep_their_label_and_no_note():
    records = [record("NVIDIA H100", None), record("NVIDIA H100", None)]
    assert device_labels(records) == ["cuda:0 (NVIDIA H100)"]
    assert device_note(records) is None


def test_ray_records_are_grouped_by_node_and_different_models_are_said():
    records = [record("NVIDIA H100", "a"), record("NVIDIA A100", "b"), record("NVIDIA H100", "a")]
    assert device_labels(records) == ["cuda:0 (NVIDIA H100) on a", "cuda:0 (NVIDIA A100) on b"]
    assert device_note(records) == (
        "These points ran on 2 device models (NVIDIA A100, NVIDIA H100): compare "
        "timings only between points measured on the same model."
    )
    same = [record("NVIDIA H100", "a"), record("NVIDIA H100", "b")]
    assert device_note(same) == "These points ran on 2 nodes (a, b), all on NVIDIA H100."
