"""Telemetry: the NVML path through a recorded fake of the `pynvml` module (no GPU here), RAPL on a fake
sysfs tree, and a real tiny CPU sweep whose record says why energy is unavailable (or has RAPL figures)."""

from __future__ import annotations

import json
import time
import types
from pathlib import Path

import numpy as np
import pynvml
import pytest
from pydantic import ValidationError

from bench.measure.telemetry import TelemetrySpec, TelemetryTracker, energy_units
from bench.measure.telemetry.nvml import NvmlSource, open_nvml
from bench.measure.telemetry.rapl import open_rapl
from bench.measure.telemetry.tracker import summarize, verdict
from bench.measure.telemetry.window import Window

from conftest import TINY, tiny_scenario
from shared_sweeps import shared_sweep

NOT_SUPPORTED = pynvml.NVML_ERROR_NOT_SUPPORTED
GPU_IS_LOST = pynvml.NVML_ERROR_GPU_IS_LOST
SW_POWER_CAP = pynvml.nvmlClocksEventReasonSwPowerCap
HW_THERMAL = pynvml.nvmlClocksEventReasonHwThermalSlowdown
GPU_IDLE = pynvml.nvmlClocksEventReasonGpuIdle


class FakeNvml(types.ModuleType):
    """pynvml's interface with recorded readings: `state` is what the device reports now; a key set to an
    NVML error code makes that call raise the real library's exception for it."""

    def __init__(self, **state):
        super().__init__("fake_pynvml")
        for name in dir(pynvml):  # the library's own constants and exception classes
            if name.startswith(("NVML_", "nvmlClocks", "NVMLError")):
                setattr(self, name, getattr(pynvml, name))
        self.state = dict(
            dict(sm_max=2000, energy_mj=0, power_mw=100_000, sm=1900, mem=2600, temp=50, util=(90, 40), reasons=0),
            **state,
        )
        self.shutdowns = 0

    def _get(self, key):
        value = self.state[key]
        if isinstance(value, Err):
            raise pynvml.NVMLError(value.code)
        return value

    def nvmlDeviceGetMaxClockInfo(self, handle, kind):
        assert kind == pynvml.NVML_CLOCK_SM
        return self._get("sm_max")

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        return self._get("energy_mj")

    def nvmlDeviceGetPowerUsage(self, handle):
        return self._get("power_mw")

    def nvmlDeviceGetClockInfo(self, handle, kind):
        return self._get({pynvml.NVML_CLOCK_SM: "sm", pynvml.NVML_CLOCK_MEM: "mem"}[kind])

    def nvmlDeviceGetTemperature(self, handle, sensor):
        return self._get("temp")

    def nvmlDeviceGetUtilizationRates(self, handle):
        gpu, memory = self._get("util")
        return types.SimpleNamespace(gpu=gpu, memory=memory)

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle):
        return self._get("reasons")

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle):
        return self._get("reasons")

    def nvmlShutdown(self):
        self.shutdowns += 1


class Err:
    def __init__(self, code):
        self.code = code


def play(nvml: FakeNvml, steps: list[tuple[float, dict]]) -> Window:
    """A window whose samples see the recorded readings at the recorded times (first: start, last: end)."""
    source = NvmlSource(nvml, handle=object(), label="gpu 0 (fake)")
    (t0, first), *rest = steps
    nvml.state.update(first)
    window = Window(source, t0)
    for i, (t, state) in enumerate(rest):
        nvml.state.update(state)
        window.close(t) if i == len(rest) - 1 else window.sample(t)
    return window


SPEC = TelemetrySpec()


def test_energy_counter_delta_across_a_wrap_of_the_64_bit_counter():
    top = 2**64
    window = play(
        FakeNvml(), [(10.0, {"energy_mj": top - 500}), (10.5, {"energy_mj": top - 100}), (11.0, {"energy_mj": 300})]
    )
    t = summarize(window, None, SPEC, {"output_tokens": 8, "sequences": 2}, "cuda:0")
    e = t.energy
    assert (e.available, e.source, e.method) == (True, "nvml", "energy-counter")
    assert e.energy_j == pytest.approx(0.8)  # 400 mJ to the top, 400 mJ after it
    assert e.interval_s == pytest.approx(1.0) and e.mean_power_w == pytest.approx(0.8)
    assert e.per_unit.output_token_j == pytest.approx(0.1) and e.per_unit.sequence_j == pytest.approx(0.4)
    assert e.per_unit.image_j is None
    assert t.samples == 3 and t.power_w.mean == pytest.approx(100.0)


def test_missing_counter_integrates_power_as_a_trapezoid():
    window = play(
        FakeNvml(energy_mj=Err(NOT_SUPPORTED)),
        [
            (0.0, {"power_mw": 100_000}),
            (1.0, {"power_mw": 200_000}),
            (2.0, {"power_mw": 300_000}),
            (4.0, {"power_mw": 200_000}),
        ],
    )
    t = summarize(window, None, SPEC, {"images": 3}, "cuda:0")
    # by hand: (100+200)/2·1 + (200+300)/2·1 + (300+200)/2·2 = 150 + 250 + 500 J
    assert t.energy.method == "power-integration" and t.energy.energy_j == pytest.approx(900.0)
    assert t.energy.per_unit.image_j == pytest.approx(300.0)
    assert "Not Supported" in t.unsupported["energy_counter"]
    assert (t.power_w.min, t.power_w.max, t.power_w.mean) == (100.0, 300.0, pytest.approx(200.0))


def test_no_counter_and_no_power_is_unavailable_with_both_reasons_never_zero():
    window = play(FakeNvml(energy_mj=Err(NOT_SUPPORTED), power_mw=Err(NOT_SUPPORTED)), [(0.0, {}), (1.0, {})])
    t = summarize(window, None, SPEC, {"output_tokens": 4}, "cuda:0")
    assert t.energy.available is False and t.energy.energy_j is None and t.energy.per_unit is None
    assert "nvmlDeviceGetTotalEnergyConsumption" in t.energy.unavailable_reason
    assert t.energy.unavailable_reason.count("Not Supported") == 2
    assert t.sm_clock_mhz.mean == 1900  # the other readings go on


def test_counter_lost_mid_phase_falls_back_to_power_and_errors_are_recorded_once():
    window = play(
        FakeNvml(),
        [
            (0.0, {"energy_mj": 1000, "power_mw": 50_000}),
            (1.0, {"energy_mj": Err(GPU_IS_LOST), "temp": Err(GPU_IS_LOST)}),
            (2.0, {"energy_mj": 9000, "temp": 70}),
        ],
    )
    t = summarize(window, None, SPEC, {}, "cuda:0")
    assert t.energy.method == "power-integration" and t.energy.energy_j == pytest.approx(100.0)  # 50 W × 2 s
    assert "GPU is lost" in t.unsupported["temperature"]
    assert t.temperature_c.samples == 1  # not asked again after the error, even though it would answer now


def test_throttle_bits_give_fractions_and_a_warning_or_an_invalid_record():
    window = play(
        FakeNvml(),
        [
            (0.0, {"reasons": GPU_IDLE}),
            (1.0, {"reasons": SW_POWER_CAP | HW_THERMAL}),
            (2.0, {"reasons": SW_POWER_CAP}),
            (3.0, {"reasons": 0}),
        ],
    )
    t = summarize(window, None, SPEC, {}, "cuda:0")
    assert t.clock_event_reasons == {"gpu_idle": 0.25, "sw_power_cap": 0.5, "hw_thermal_slowdown": 0.25}
    assert t.throttled is True
    invalid, warnings = verdict(t, SPEC)
    assert invalid == [] and len(warnings) == 1
    assert "sw_power_cap set in 50% of 4 samples" in warnings[0] and "hw_thermal_slowdown" in warnings[0]
    assert "gpu_idle" not in warnings[0]  # idling is no throttling
    invalid, warnings = verdict(t, TelemetrySpec(throttle="invalid"))
    assert len(invalid) == 1 and warnings == []


def test_sm_clock_well_below_its_maximum_over_busy_samples_is_throttling():
    window = play(
        FakeNvml(sm_max=2000),
        [
            (0.0, {"sm": 300, "reasons": GPU_IDLE}),
            (1.0, {"sm": 1000, "reasons": 0}),
            (2.0, {"sm": 1000}),
            (3.0, {"sm": 300, "reasons": GPU_IDLE}),
        ],
    )
    t = summarize(window, None, SPEC, {}, "cuda:0")
    assert t.throttled is True and t.clock_event_reasons == {"gpu_idle": 0.5}
    assert (
        "SM clock mean 1000 MHz (min 1000) over 2 busy samples is 50% of its maximum 2000 MHz" in t.throttle_evidence[0]
    )


def test_steady_full_clocks_are_not_throttled():
    window = play(FakeNvml(sm_max=2000), [(0.0, {"sm": 1900}), (1.0, {"sm": 1850}), (2.0, {"sm": 1900})])
    t = summarize(window, None, SPEC, {}, "cuda:0")
    assert t.throttled is False and t.throttle_evidence == [] and verdict(t, SPEC) == ([], [])
    assert t.sm_clock_max_mhz == 2000 and t.memory_clock_mhz.mean == 2600 and t.gpu_utilization_pct.mean == 90


class OldDriver(FakeNvml):
    def nvmlDeviceGetCurrentClocksEventReasons(self, handle):  # a driver before the "event reasons" name
        raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)


class OldLibrary(FakeNvml):
    nvmlDeviceGetCurrentClocksEventReasons = None  # a pynvml before the name: getattr finds nothing


@pytest.mark.parametrize("nvml_class", [OldDriver, OldLibrary])
def test_without_event_reasons_the_throttle_reasons_call_is_read(nvml_class):
    window = play(nvml_class(reasons=SW_POWER_CAP), [(0.0, {}), (1.0, {})])
    assert summarize(window, None, SPEC, {}, "cuda:0").clock_event_reasons == {"sw_power_cap": 1.0}


def test_idle_baseline_is_subtracted_when_asked_and_both_figures_are_kept():
    nvml = FakeNvml()
    idle = play(nvml, [(0.0, {"energy_mj": 0}), (1.0, {"energy_mj": 50_000})])  # 50 W for 1 s
    phase = play(nvml, [(1.0, {"energy_mj": 50_000}), (3.0, {"energy_mj": 350_000})])  # 300 J in 2 s
    units = {"output_tokens": 100}
    kept = summarize(phase, idle, TelemetrySpec(idle_s=1), units, "cuda:0").energy
    assert kept.idle_power_w == pytest.approx(50.0) and kept.energy_above_idle_j == pytest.approx(200.0)
    assert kept.basis == "total" and kept.per_unit.output_token_j == pytest.approx(3.0)
    sub = summarize(phase, idle, TelemetrySpec(idle_s=1, subtract_idle=True), units, "cuda:0").energy
    assert sub.basis == "above-idle" and sub.per_unit.output_token_j == pytest.approx(2.0)
    assert sub.per_unit_total.output_token_j == pytest.approx(3.0) and sub.energy_j == pytest.approx(300.0)


def test_subtract_idle_without_a_baseline_is_rejected(tmp_path):
    with pytest.raises(ValidationError, match="idle_s"):
        TelemetrySpec(subtract_idle=True)
    path = tiny_scenario(tmp_path / "s.yaml")
    path.write_text(path.read_text() + "  telemetry:\n    subtract_idle: true\n")
    from bench.errors import BenchInputError
    from bench.scenario import load_scenario

    with pytest.raises(BenchInputError, match="idle_s") as err:
        load_scenario(path)
    assert "measure.telemetry" in str(err.value)


def test_nvml_that_cannot_start_is_a_reason():
    class NoLibrary(FakeNvml):
        def nvmlInit(self):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    source, why = open_nvml(types.SimpleNamespace(type="cuda", index=0), NoLibrary())
    assert source is None and "NVML Shared Library Not Found" in why


def test_tracker_samples_in_a_thread_between_synchronised_ends():
    """A counter that grows at 250 W of a second clock: the tracker's energy is 250 W × its interval, and its
    idle baseline 250 W."""
    nvml = FakeNvml()
    start = time.perf_counter()
    watts = 250.0

    def counter(handle):
        return int((time.perf_counter() - start) * watts * 1e3)

    nvml.nvmlDeviceGetTotalEnergyConsumption = counter
    syncs = []
    tracker = TelemetryTracker(
        TelemetrySpec(sample_interval_s=0.01, idle_s=0.1),
        NvmlSource(nvml, object(), "gpu 0 (fake)"),
        None,
        "cuda:0 fake",
        synchronize=lambda: syncs.append(time.perf_counter()),
    )
    with tracker:
        time.sleep(0.2)
    t, invalid, warnings = tracker.finish({"output_tokens": 10})
    assert len(syncs) == 2 and nvml.shutdowns == 1
    assert t.samples >= 5  # 0.2 s at 0.01 s, however slow this machine is
    assert 0.2 <= t.energy.interval_s <= syncs[1] - syncs[0] + 0.05
    assert t.energy.energy_j == pytest.approx(watts * t.energy.interval_s, abs=0.01 * watts)
    assert invalid == [] and len(warnings) == 1  # a 0.2 s phase: the counter's steps are coarse at that span
    assert warnings[0].startswith("energy measured over 0.2") and "energy counter updates" in warnings[0]
    # the idle baseline came first, at the same 250 W: nothing of the phase is above it
    assert 0.1 <= t.energy.idle_s <= 0.5 and t.energy.idle_power_w == pytest.approx(watts, rel=0.05)
    assert t.energy.energy_above_idle_j == pytest.approx(0.0, abs=0.05 * watts * t.energy.interval_s)


def test_serving_level_gets_energy_per_request():
    """What a serving level calls: the tracker around the level, then finish() with its requests."""
    window = play(FakeNvml(), [(0.0, {"energy_mj": 0}), (2.0, {"energy_mj": 40_000})])
    tracker = TelemetryTracker(SPEC, window.source, None, "cuda:0")
    tracker.window = window  # as `with tracker:` leaves it
    t, _, _ = tracker.finish({"requests": 8, "output_tokens": 400})
    assert t.energy.per_unit.request_j == pytest.approx(5.0) and t.energy.per_unit.output_token_j == pytest.approx(0.1)


def test_energy_units_per_task():
    assert energy_units("text-generation", 2, {"new_tokens": 4, "prompt_tokens": 8}, 3) == {
        "output_tokens": 24,
        "sequences": 6,
    }
    assert energy_units("feature-extraction", 4, {"sequence_length": 128}, 5) == {"sequences": 20}
    assert energy_units("text-to-image", 1, {"num_inference_steps": 2}, 7) == {"images": 7}


# --- RAPL on a fake powercap tree ----------------------------------------------------------------------------


def zone(root: Path, name: str, label: str, max_uj: int | None, energy_uj: int | None) -> Path:
    z = root / name
    z.mkdir(parents=True)
    (z / "name").write_text(label + "\n")
    if max_uj is not None:
        (z / "max_energy_range_uj").write_text(f"{max_uj}\n")
    if energy_uj is not None:
        (z / "energy_uj").write_text(f"{energy_uj}\n")
    return z


def test_rapl_sums_packages_across_a_wrap_at_max_energy_range(tmp_path):
    p0 = zone(tmp_path, "intel-rapl:0", "package-0", 1000, 900)
    core = zone(tmp_path, "intel-rapl:0:0", "core", 1000, 10)  # inside package-0: never added
    p1 = zone(tmp_path, "intel-rapl:1", "package-1", 2000, 100)
    psys = zone(tmp_path, "intel-rapl:2", "psys", 5000, 0)  # the whole platform: never added
    rapl, why = open_rapl(tmp_path)
    assert why is None and rapl.domain == "rapl package-0 + package-1"
    window = Window(rapl, 0.0)
    (p0 / "energy_uj").write_text("990\n")
    window.sample(1.0)
    for z, uj in ((p0, 100), (p1, 400), (core, 500), (psys, 4000)):
        (z / "energy_uj").write_text(f"{uj}\n")
    window.close(2.0)
    t = summarize(window, None, SPEC, {"sequences": 10}, "cpu")
    # package-0: 900 → 990 → (wrap at 1000) 100 = 90 + 110 µJ; package-1: 100 → 400 = 300 µJ
    assert (t.energy.source, t.energy.method) == ("rapl", "energy-counter")
    assert t.energy.energy_j == pytest.approx(500e-6) and t.energy.per_unit.sequence_j == pytest.approx(50e-6)
    assert t.throttled is None and t.power_w is None  # RAPL has no clocks to judge


def test_rapl_unavailable_says_why(tmp_path):
    assert "does not exist" in open_rapl(tmp_path / "absent")[1]
    zone(tmp_path / "a", "intel-rapl:0", "package-0", 1000, None)  # energy_uj missing (or root-only)
    rapl, why = open_rapl(tmp_path / "a")
    assert rapl is None and "intel-rapl:0" in why and "energy_uj" in why
    zone(tmp_path / "b", "intel-rapl:0", "package-0", 1000, 5)
    zone(tmp_path / "b", "intel-rapl:1", "package-1", None, 5)  # half the packages would be a wrong figure
    rapl, why = open_rapl(tmp_path / "b")
    assert rapl is None and "intel-rapl:1" in why and "max_energy_range_uj" in why
    zone(tmp_path / "c", "intel-rapl:0", "psys", 1000, 5)
    assert "no RAPL package zone" in open_rapl(tmp_path / "c")[1]


# --- a real tiny sweep ---------------------------------------------------------------------------------------


telemetry_sweep = shared_sweep(  # run with the other shared sweeps (tests/shared_sweeps.py)
    "telemetry_sweep",
    {
        "tiny.yaml": TINY.format(
            name="tiny", model="tiny-gpt2", precision="[fp32]", batch="[1]", iters=3, min_time=0.0, timeout=120
        )
    },
    "--no-fidelity",
    timeout_s=300,
)


def test_cpu_sweep_record_has_telemetry(telemetry_sweep):
    record = json.loads((telemetry_sweep.check().out / "results.jsonl").read_text().splitlines()[0])
    e = record["telemetry"]["energy"]
    assert e["units"] == {
        "output_tokens": record["metrics"]["latency_s"]["count"] * 4,
        "sequences": record["metrics"]["latency_s"]["count"],
    }
    powercap = Path("/sys/class/powercap")
    if not powercap.is_dir():  # this machine (a container without powercap): unavailable, with the reason
        assert e["available"] is False and e["energy_j"] is None and e["per_unit"] is None and e["source"] == "rapl"
        assert e["unavailable_reason"].startswith("/sys/class/powercap does not exist")
    elif not list(powercap.glob("intel-rapl:*/energy_uj")):
        assert e["available"] is False and e["unavailable_reason"]
    else:
        try:
            [f.read_text() for f in powercap.glob("intel-rapl:*/energy_uj")]
            readable = True
        except OSError:
            readable = False
        assert e["available"] is readable and (e["unavailable_reason"] is None) is readable
        if readable:
            assert e["source"] == "rapl" and e["energy_j"] > 0


# --- the gate and the report read it ------------------------------------------------------------------------


def with_energy(records, j_per_token: float, seed: int):
    """Synthetic records (tests/gate_synth.py) given telemetry: j_per_token × N(1, 1%) per repeat."""
    from bench.measure.telemetry import Energy, EnergyPerUnit, Telemetry

    rng = np.random.default_rng(seed)
    for r in records:
        tokens = r.metrics.latency_s.count * r.batch_size * r.workload["new_tokens"]
        j = j_per_token * (1 + rng.normal(0, 0.01))
        r.telemetry = Telemetry(
            device="cuda:0",
            sample_interval_s=0.05,
            energy=Energy(
                available=True,
                source="nvml",
                method="energy-counter",
                energy_j=j * tokens,
                units={"output_tokens": tokens},
                per_unit=EnergyPerUnit(output_token_j=j),
            ),
        )
    return records


def test_gate_compares_energy_per_token(tmp_path):
    from bench.gate.compare import compare, load_side
    from bench.gate.config import load_config

    from gate_synth import side, write_run

    name = "telemetry.energy.per_unit.output_token_j"
    base = write_run(tmp_path / "base", with_energy(side(seed=1), 0.050, seed=1))
    worse = write_run(tmp_path / "worse", with_energy(side(seed=2), 0.065, seed=2))  # +30% energy, same speed
    same = write_run(tmp_path / "same", with_energy(side(seed=3), 0.050, seed=3))
    verdicts = {
        c.metric.name: c for c in compare(load_side(str(base)), load_side(str(worse)), load_config(None)).comparisons
    }
    assert verdicts[name].verdict == "regression" and verdicts["latency_s"].verdict != "regression"
    assert verdicts[name].current_value == pytest.approx(0.065, rel=0.03)
    same_verdicts = {
        c.metric.name: c.verdict
        for c in compare(load_side(str(base)), load_side(str(same)), load_config(None)).comparisons
    }
    assert same_verdicts[name] == "unchanged"


def test_report_draws_energy_beside_quantization_or_says_why_not(tmp_path):
    from bench.report import write_report

    from gate_synth import record, write_run

    lat = np.full(12, 0.02)
    fp32 = with_energy([record("e", r, lat, precision="fp32") for r in range(2)], 0.05, seed=0)
    int8 = with_energy([record("e", r, lat, precision="int8") for r in range(2)], 0.03, seed=0)
    files = write_report([write_run(tmp_path / "run", fp32 + int8)], tmp_path / "report")
    md = files.markdown.read_text()
    assert "#### Energy per unit of work by precision and backend" in md
    assert any(p.name.endswith("--energy.png") for p in files.charts)
    assert md.index("#### Quantization gains") < md.index("#### Energy per unit of work")
    # a run without figures: the reason its records give is the reason the chart is missing
    none = [record("n", r, lat) for r in range(2)]
    for r in none:
        r.telemetry = summarize(None, None, SPEC, {}, "cpu", "/sys/class/powercap does not exist: no powercap")
    md = write_report([write_run(tmp_path / "run2", none)], tmp_path / "report2").markdown.read_text()
    assert (
        "Energy per unit of work by precision and backend: skipped: no energy measured "
        "(/sys/class/powercap does not exist: no powercap)" in md
    )
