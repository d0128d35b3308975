"""CPU package energy from RAPL through the Linux powercap interface (/sys/class/powercap).

Reads `intel-rapl:N/energy_uj` (µJ, wrapping at `max_energy_range_uj`) of every top-level zone named
`package-*` (the AMD driver uses the same names). Subzones (core, uncore, dram) lie inside a package and
`psys` spans the platform, so neither is added to it. `open_rapl` gives the reader, or the reason there is none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

POWERCAP = Path("/sys/class/powercap")
_TOP_ZONE = re.compile(r"^intel-rapl:\d+$")


@dataclass(frozen=True)
class RaplZone:
    path: Path
    name: str
    max_range_uj: int

    def energy_uj(self) -> int:
        return int((self.path / "energy_uj").read_text().strip())


class Rapl:
    """A telemetry source (see `bench.measure.telemetry.window`): a counter, no other readings."""

    source = "rapl"
    joules_per_count = 1e-6
    reason_bits: dict[str, int] = {}

    def __init__(self, zones: list[RaplZone]):
        self.zones = zones
        self.domain = "rapl " + " + ".join(z.name for z in zones)
        self.moduli = [z.max_range_uj for z in zones]
        self.counter_reason: str | None = None
        self.unsupported: dict[str, str] = {}

    def counter_raw(self) -> list[int] | None:
        try:
            return [z.energy_uj() for z in self.zones]
        except (OSError, ValueError) as exc:
            self.counter_reason = f"RAPL counter read failed: {type(exc).__name__}: {exc}"
            return None

    def reading(self) -> dict:
        return {}

    def close(self) -> None:
        pass


def open_rapl(root: Path = POWERCAP) -> tuple[Rapl | None, str | None]:
    """(reader, None) when every package zone's counter can be read now; else (None, the reason)."""
    if not root.is_dir():
        return None, f"{root} does not exist: no powercap (RAPL) interface on this machine or in this container"
    zones, problems = [], []
    for path in sorted(p for p in root.iterdir() if _TOP_ZONE.match(p.name)):
        try:
            name = (path / "name").read_text().strip()
            if not name.startswith("package"):
                continue
            zone = RaplZone(path, name, int((path / "max_energy_range_uj").read_text().strip()))
            zone.energy_uj()
        except (OSError, ValueError) as exc:
            problems.append(f"{path.name}: {type(exc).__name__}: {exc}")
            continue
        zones.append(zone)
    if problems:  # part of the packages would be a figure for less than the CPU
        hint = (
            " (energy_uj is root-only since Linux 5.10, CVE-2020-8694)"
            if any("Permission" in p for p in problems)
            else ""
        )
        return None, f"RAPL counters not readable: {'; '.join(problems)}{hint}"
    if not zones:
        return None, f"{root} has no RAPL package zone (intel-rapl:N named package-*)"
    return Rapl(zones), None
