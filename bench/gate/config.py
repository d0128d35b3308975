"""The gate config file (`bench compare --config gate.yaml`): thresholds, per metric and per scenario.

    threshold: 5%              # time and throughput metrics: the unchanged zone is ±5% of the baseline
    memory_threshold: 2%       # memory peaks (near-deterministic, so their own, tighter tolerance)
    alpha: 0.05                # false discovery rate across points' families (Benjamini–Hochberg)
    min_repeats: 2             # ok repeats per side below which a point gets no verdict
    min_samples: 3             # raw samples per repeat below which a time metric gets no verdict
    invalid_repeats: include   # repeats the worker marked `valid: false` (latency CV above max_cv): include | exclude
    session_noise: 0           # sd of a whole run's shift that repeats inside it cannot show (calibrate with
                               # scripts/gate_quality.py); added to both sides' variance, time metrics only
    statistic: p10             # which call time metrics compare: p10 (default) or median, pNN; rates follow
                               # it (tokens/s at that call time); see README "Regression gate"
    combine: pooled            # pooled: the statistic of all calls of a side's repeats together (default);
                               # mean: the mean over repeats of each repeat's statistic
    repeat_noise: pooled       # pooled: between-repeat noise shared by a side's points (empirical Bayes) | own
    inconclusive: auto         # auto | fail | warn | pass: what a comparison the gate could not judge does
    missing: fail              # fail | warn: a point or metric of the baseline that the current run lacks
    slo_alerts: new            # new | fail | warn: a current serving level that breaks its scenario's SLO
    bootstrap_resamples: 2000
    seed: 0
    metrics:                   # per metric, every scenario
      ttft_s: {threshold: 10%}
      memory.host_rss_peak_bytes: {enabled: false}
    scenarios:                 # per scenario: the same keys as the top level's threshold part
      gpt2-decode:
        threshold: 8%
        metrics:
          tpot_s: {threshold: 3%}

Precedence, most specific first: scenarios.S.metrics.M, scenarios.S.threshold (or memory_threshold),
metrics.M, threshold (or memory_threshold). Unknown keys and unknown metric names are errors.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, NonNegativeInt, PositiveInt, ValidationError

from bench.errors import BenchInputError
from bench.gate.metrics import GATE_METRICS, METRICS_BY_NAME, GateMetric


def parse_fraction(value: Any) -> Any:
    """ "5%" → 0.05; 0.05 → 0.05. A bare number ≥ 1 is refused (5 would mean 500%: write 5%)."""
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise ValueError(f"{value!r} is not a fraction such as 5% or 0.05") from None
        if not text.endswith("%") and number >= 1:
            raise ValueError(f"{value!r} is not below 1; write a percentage such as {text}%")
        value = number
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 1:
        raise ValueError(f"{value!r} is not below 1; write a percentage such as {value}%")
    return value


Fraction = Annotated[float, BeforeValidator(parse_fraction), Field(gt=0, lt=1)]


def parse_statistic(value: Any) -> Any:
    """ "median" or "pNN" (1 ≤ NN ≤ 99; "p50" is the median): which call of each repeat the gate compares."""
    text = str(value).strip().lower()
    if text in ("median", "p50"):
        return "median"
    try:
        percent = float(text[1:]) if text.startswith("p") else math.nan
    except ValueError:
        percent = math.nan
    if not 1 <= percent <= 99:
        raise ValueError(f"{value!r} is not median or a percentile p1 … p99 (e.g. p10)")
    return f"p{percent:g}"


Statistic = Annotated[str, BeforeValidator(parse_statistic)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricSettings(Strict):
    threshold: Fraction | None = None
    enabled: bool = True


class ScenarioSettings(Strict):
    threshold: Fraction | None = None
    memory_threshold: Fraction | None = None
    metrics: dict[str, MetricSettings] = {}


class GateConfig(Strict):
    threshold: Fraction = 0.05
    memory_threshold: Fraction = 0.02
    alpha: float = Field(0.05, gt=0, le=0.5)
    min_repeats: int = Field(2, ge=2)
    min_samples: PositiveInt = 3
    # Kept by default: the worker's CV counts every call, so a few slow calls void a repeat whose bulk is steady
    # (bert-base on an H100: per-repeat p10 within ±1%, CV 12–40%); the p10 statistic is not moved by them.
    invalid_repeats: Literal["exclude", "include"] = "include"
    session_noise: Annotated[float, BeforeValidator(parse_fraction), Field(ge=0, lt=1)] = 0.0
    statistic: Statistic = "p10"
    # Pooled, a repeat that a slow period of the machine covered whole adds its calls to the slow end, where a
    # low quantile does not look; averaged, it moves the side by 1/R of its slowdown (measured: README).
    combine: Literal["pooled", "mean"] = "pooled"
    # The between-repeat noise of a side: pooled over its points and metrics with empirical-Bayes shrinkage
    # (docs/gate.md, "Few repeats: pooled noise and families"), or each comparison's own repeats alone.
    repeat_noise: Literal["pooled", "own"] = "pooled"
    # What an inconclusive comparison does to the exit code. auto: fail when its unadjusted 1 − alpha interval
    # lies beyond the threshold on the bad side (a likely regression), warn otherwise; warn: exit 0, said in the
    # summary; fail: exit 1; pass: exit 0, still listed.
    inconclusive: Literal["auto", "fail", "warn", "pass"] = "auto"
    # A point measured in the baseline that vanished from the current run, or a metric it no longer has.
    missing: Literal["fail", "warn"] = "fail"
    # A fixed-rate serving level of the current run that breaks an SLO of its scenario (an alert, printed either
    # way). new: fails unless the baseline's same level broke the same SLO; fail: every alert fails; warn: none.
    slo_alerts: Literal["new", "fail", "warn"] = "new"
    bootstrap_resamples: int = Field(2000, ge=200, le=100_000)
    seed: NonNegativeInt = 0
    metrics: dict[str, MetricSettings] = {}
    scenarios: dict[str, ScenarioSettings] = {}

    @property
    def quantile(self) -> float:
        """The per-repeat statistic of time metrics as a quantile of the calls: p10 → 0.1, median → 0.5."""
        return 0.5 if self.statistic == "median" else float(self.statistic[1:]) / 100

    def enabled(self, scenario: str, metric: GateMetric) -> bool:
        for layer in self._layers(scenario):
            settings = layer.get(metric.name)
            if settings is not None and "enabled" in settings.model_fields_set:
                return settings.enabled
        return True

    def threshold_for(self, scenario: str, metric: GateMetric) -> float:
        memory = metric.kind == "memory"
        sc = self.scenarios.get(scenario)
        if sc is not None:
            own = sc.metrics.get(metric.name)
            if own is not None and own.threshold is not None:
                return own.threshold
            general = sc.memory_threshold if memory else sc.threshold
            if general is not None:
                return general
        own = self.metrics.get(metric.name)
        if own is not None and own.threshold is not None:
            return own.threshold
        return self.memory_threshold if memory else self.threshold

    def _layers(self, scenario: str) -> list[dict[str, MetricSettings]]:
        sc = self.scenarios.get(scenario)
        return ([sc.metrics] if sc is not None else []) + [self.metrics]


def load_config(path: Path | None, threshold: str | None = None) -> GateConfig:
    """The config file (or the defaults), with --threshold replacing its top-level threshold."""
    data: dict[str, Any] = {}
    if path is not None:
        data = _read(path)
    if threshold is not None:
        try:
            data["threshold"] = parse_fraction(threshold)
        except ValueError as exc:
            raise BenchInputError("--threshold", str(exc)) from None
        if not 0 < data["threshold"] < 1:
            raise BenchInputError("--threshold", f"{threshold!r} must lie between 0% and 100%")
    source = str(path) if path is not None else "--threshold"
    try:
        config = GateConfig.model_validate(data)
    except ValidationError as err:
        raise _input_error(source, err) from None
    for prefix, metrics in [("metrics", config.metrics)] + [
        (f"scenarios.{name}.metrics", sc.metrics) for name, sc in config.scenarios.items()
    ]:
        for name in metrics:
            if name not in METRICS_BY_NAME:
                known = ", ".join(m.name for m in GATE_METRICS)
                raise BenchInputError(source, f"unknown metric {name!r} (known: {known})", f"{prefix}.{name}")
    return config


def _read(path: Path) -> dict[str, Any]:
    src = str(path)
    if not path.is_file():
        raise BenchInputError(src, "no such gate config file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchInputError(src, f"cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise BenchInputError(src, f"malformed YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BenchInputError(src, f"a gate config must be a mapping, got {type(data).__name__}")
    return data


def _input_error(source: str, err: ValidationError) -> BenchInputError:
    first = err.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    kind, msg = first["type"], first["msg"]
    if kind == "extra_forbidden":
        msg = "unknown key"
    elif kind == "missing":
        msg = "required key is missing"
    else:
        msg = msg.removeprefix("Value error, ")
    return BenchInputError(source, msg, field)
