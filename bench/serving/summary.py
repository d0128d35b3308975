"""The end-of-sweep view of serving records: one row per level, the max sustainable rate per point, and the
SLO alerts CI uses.

Alerts are the fixed-rate levels that break an SLO. Levels a `rates: sweep` measures while searching are
not alerts (failing is how the search finds its bound); its result is the point's max sustainable rate.
`exit_code` is 1 when there is an alert from a scenario that asks for it (serving.fail_on_slo).
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

COLUMNS = (
    "scenario",
    "backend",
    "precision",
    "batching",
    "bs",
    "rate req/s",
    "scheduled",
    "achieved",
    "send late p95",
    "TTFT p95",
    "TPOT p95",
    "E2E p99",
    "SLO attainment [95% CI]",
    "goodput req/s",
    "saturated",
    "valid",
)


def serving_records(records: list[Any]) -> list[Any]:
    return [r for r in records if getattr(r, "serving", None) is not None]


def alert_items(records: list[Any]) -> list[tuple[Any, str, str]]:
    """(record, SLO key, line) per broken SLO of a fixed-rate level, the line naming the point:
    'p95 TTFT 0.31 s > 0.2 s at 16 req/s, int8 dynamic (scenario, model, backend, bs8)'."""
    out = []
    for r in serving_records(records):
        s = r.serving
        if s.kind == "level" and not s.in_sweep and r.status == "ok":
            broken = [c.key for c in s.slo_checks if not c.ok]  # s.alerts are their lines, in the same order
            out += [
                (
                    r,
                    broken[i] if i < len(broken) else a,
                    f"{a} ({r.scenario}, {r.model}, {r.backend}, bs{r.batch_size})",
                )
                for i, a in enumerate(s.alerts)
            ]
    return out


def alerts(records: list[Any]) -> list[str]:
    """One line per broken SLO, naming the point: 'p95 TTFT 0.31 s > 0.2 s at 16 req/s, int8 dynamic (...)'."""
    return [line for _, _, line in alert_items(records)]


def exit_code(records: list[Any]) -> int:
    """1 when a level of a scenario with serving.fail_on_slo broke an SLO."""
    return 1 if alerts([r for r in records if r.serving is not None and r.serving.fail_on_slo]) else 0


def _s(value: float | None) -> str:
    from bench.summary import fmt_seconds

    return fmt_seconds(value)


def rows(records: list[Any]) -> list[list[str]]:
    out = []
    for r in serving_records(records):
        s = r.serving
        base = [r.scenario, r.backend, r.precision, s.policy, str(r.batch_size)]
        if s.kind == "summary":
            best = s.max_sustainable_rate_per_s
            bound = f" (fails at {s.lowest_failing_rate_per_s:.3g})" if s.lowest_failing_rate_per_s else ""
            text = f"max sustainable {best:.3g} req/s{bound}" if best is not None else "no level met the SLO"
            out.append(base + [text] + [""] * 10)
            continue
        if r.status != "ok":
            out.append(base + [r.status, (r.error or "")[:80]] + [""] * 9)
            continue
        a = s.attainment
        out.append(
            base
            + [
                "one at a time" if s.requested_rate_per_s is None else f"{s.requested_rate_per_s:.3g}",
                f"{s.scheduled_rate_per_s:.3g}" if s.scheduled_rate_per_s else "-",
                f"{s.achieved_rate_per_s:.3g}" if s.achieved_rate_per_s else "-",
                _s(s.send_lateness_s.p95) if s.send_lateness_s else "-",
                _s(s.ttft_s.p95 if s.ttft_s else None),
                _s(s.tpot_s.p95 if s.tpot_s else None),
                _s(s.e2e_s.p99 if s.e2e_s else None),
                f"{a.fraction:.0%} [{a.ci_low:.0%}, {a.ci_high:.0%}]" if a else "-",
                f"{a.goodput_per_s:.3g}" if a else "-",
                "yes" if s.saturated else "no",
                "yes" if r.valid else "no",
            ]
        )
    return out


def rich_table(records: list[Any]) -> Table:
    table = Table(title="serving levels")
    for col in COLUMNS:
        table.add_column(col, overflow="fold")
    for row in rows(records):
        table.add_row(*row)
    return table


def markdown(records: list[Any]) -> str:
    if not serving_records(records):
        return ""
    lines = ["", "## Serving levels", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows(records)]
    found = alerts(records)
    if found:
        lines += ["", "## SLO alerts", ""] + [f"- {a}" for a in found]
    return "\n".join(lines) + "\n"
