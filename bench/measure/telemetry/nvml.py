"""NVIDIA GPU readings through NVML (nvidia-ml-py's `pynvml`), the only place that calls it for telemetry.

`NvmlSource(nvml, handle, label)` takes the module as an argument, so tests hand it a recorded fake.
A reading the device or driver refuses (NVMLError) is noted once in `unsupported` with the error and not
asked again; the other readings go on. Energy: nvmlDeviceGetTotalEnergyConsumption (mJ since the driver
loaded, Volta and newer); power: nvmlDeviceGetPowerUsage (mW).
"""

from __future__ import annotations

from typing import Any

# (record name, suffix of pynvml's nvmlClocksEventReason* / nvmlClocksThrottleReason* constant)
CLOCK_EVENT_REASONS = (
    ("gpu_idle", "GpuIdle"),
    ("applications_clocks_setting", "ApplicationsClocksSetting"),
    ("sw_power_cap", "SwPowerCap"),
    ("hw_slowdown", "HwSlowdown"),
    ("sync_boost", "SyncBoost"),
    ("sw_thermal_slowdown", "SwThermalSlowdown"),
    ("hw_thermal_slowdown", "HwThermalSlowdown"),
    ("hw_power_brake_slowdown", "HwPowerBrakeSlowdown"),
    ("display_clock_setting", "DisplayClockSetting"),
    ("board_limit", "BoardLimit"),
    ("reliability", "Reliability"),
)
# The reasons that mean the clocks were held down by power or heat (not idling, not a user's setting).
THROTTLING = frozenset(
    {
        "sw_power_cap",
        "hw_slowdown",
        "sw_thermal_slowdown",
        "hw_thermal_slowdown",
        "hw_power_brake_slowdown",
        "board_limit",
        "reliability",
    }
)
MJ_COUNTER_MODULUS = 2**64  # nvmlDeviceGetTotalEnergyConsumption is an unsigned long long


def reason_bits(nvml: Any) -> dict[str, int]:
    """Record name → bit, from the constants of the NVML module in use."""
    bits = {}
    for name, suffix in CLOCK_EVENT_REASONS:
        bit = getattr(nvml, f"nvmlClocksEventReason{suffix}", None) or getattr(
            nvml, f"nvmlClocksThrottleReason{suffix}", None
        )
        if bit:
            bits[name] = int(bit)
    return bits


class NvmlSource:
    """One GPU: the energy counter (or none), and one reading of power, clocks, temperature, utilisation and
    clock-event reasons per `reading()`."""

    source = "nvml"
    joules_per_count = 1e-3
    moduli = [MJ_COUNTER_MODULUS]

    def __init__(self, nvml: Any, handle: Any, label: str):
        self._nvml, self._handle = nvml, handle
        self.unsupported: dict[str, str] = {}
        self.domain = label
        self.reason_bits = reason_bits(nvml)
        self.sm_clock_max_mhz = self._ask("sm_clock_max", nvml.nvmlDeviceGetMaxClockInfo, nvml.NVML_CLOCK_SM)
        self.counter_reason: str | None = None
        self._reasons_fn = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)

    def _ask(self, key: str, fn: Any, *args: Any) -> Any:
        if key in self.unsupported:
            return None
        try:
            return fn(self._handle, *args)
        except self._nvml.NVMLError as exc:
            self.unsupported[key] = f"{type(exc).__name__}: {exc}"
            return None

    def counter_raw(self) -> list[int] | None:
        mj = self._ask("energy_counter", self._nvml.nvmlDeviceGetTotalEnergyConsumption)
        if mj is None:
            self.counter_reason = f"nvmlDeviceGetTotalEnergyConsumption: {self.unsupported['energy_counter']}"
            return None
        return [int(mj)]

    def _reasons(self) -> int | None:
        if self._reasons_fn is not None and "clock_event_reasons" not in self.unsupported:
            bits = self._ask("clock_event_reasons", self._reasons_fn)
            if bits is not None or "FunctionNotFound" not in self.unsupported["clock_event_reasons"]:
                return bits
        # drivers before the "event reasons" name: the deprecated throttle-reasons call reads the same bits
        return self._ask("clock_throttle_reasons", self._nvml.nvmlDeviceGetCurrentClocksThrottleReasons)

    def reading(self) -> dict[str, Any]:
        nv = self._nvml
        power_mw = self._ask("power", nv.nvmlDeviceGetPowerUsage)
        util = self._ask("utilization", nv.nvmlDeviceGetUtilizationRates)
        return {
            "power_w": None if power_mw is None else power_mw / 1e3,
            "sm_clock_mhz": self._ask("sm_clock", nv.nvmlDeviceGetClockInfo, nv.NVML_CLOCK_SM),
            "memory_clock_mhz": self._ask("memory_clock", nv.nvmlDeviceGetClockInfo, nv.NVML_CLOCK_MEM),
            "temperature_c": self._ask("temperature", nv.nvmlDeviceGetTemperature, nv.NVML_TEMPERATURE_GPU),
            "gpu_utilization_pct": None if util is None else util.gpu,
            "memory_utilization_pct": None if util is None else util.memory,
            "reasons": self._reasons(),
        }

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()  # reference-counted by NVML: the memory tracker's init stays valid
        except self._nvml.NVMLError:
            pass


def open_nvml(device: Any, nvml: Any = None) -> tuple[NvmlSource | None, str | None]:
    """(source, None) for a torch CUDA device, or (None, why NVML cannot be read)."""
    try:
        if nvml is None:
            import pynvml as nvml
        nvml.nvmlInit()
        from bench.measure.memory import nvml_handle

        handle = nvml_handle(device)
        name = nvml.nvmlDeviceGetName(handle)
    except Exception as exc:  # no driver library, no permission, a lost GPU: the run goes on without it
        return None, f"NVML not usable: {type(exc).__name__}: {exc}"
    name = name.decode() if isinstance(name, bytes) else name
    return NvmlSource(nvml, handle, f"gpu {device.index or 0} ({name})"), None
