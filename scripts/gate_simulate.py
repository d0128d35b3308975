#!/usr/bin/env python3
"""The gate on synthetic runs with known noise: what it does on a runner with a given run-to-run noise.

    .venv/bin/python scripts/gate_simulate.py [--repeats 5] [--trials 100]

A simulation, not a measurement: each side is R repeats of `calls` calls of one text-generation point,
log(latency) = log(20 ms · slowdown) + N(0, between) per repeat + N(0, within) per call, TTFT a fixed tenth
of each call; every comparison goes through bench.gate.compare with the default gate settings (all 7 CPU
metrics, Benjamini–Hochberg over them). For each run-to-run noise level: how often A/A comparisons fail
the gate, and how often a 5% (exactly the threshold), 7.5%, 10% and 15% slowdown does.
scripts/gate_quality.py measures the same on real runs of this machine.

    .venv/bin/python scripts/gate_simulate.py --few-repeats [--trials 20]

The few-repeats plan (docs/gate.md, "Few repeats: pooled noise and families"), simulated: a run of 3 points
(batch sizes of one decode), plain sides of 3 and 5 repeats (each side its own session: a shift N(0, session)
shared by its points, unseen by its repeats) and interleaved sides of 8 rounds (per round a shift N(0, shared)
common to both arms, per arm and repeat N(0, own)); A/A, +10% and +30%. Noise levels are the ones measured on
this project's VM (docs/measurements/2026-11-23-gate-quality.md), named by --noise.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.gate.compare import Side, compare  # noqa: E402
from bench.gate.config import load_config  # noqa: E402
from bench.measure.memory import MemoryMetrics  # noqa: E402
from bench.measure.stats import Stats  # noqa: E402
from bench.results import Record  # noqa: E402
from bench.workloads.text_generation import TextGenerationMetrics  # noqa: E402

ENV = {"cpu": {"model": "synthetic", "torch_threads": 1}, "libraries": {"torch": "synthetic"}}
PROMPT, NEW = 32, 32


def record(repeat: int, latencies: np.ndarray) -> Record:
    ttft = latencies * 0.1
    metrics = TextGenerationMetrics(
        latency_s=Stats.of(latencies),
        ttft_s=Stats.of(ttft),
        tpot_s=Stats.of((latencies - ttft) / (NEW - 1)),
        output_tokens_per_s=NEW / latencies.mean(),
        requests_per_s=1 / latencies.mean(),
        prefill_tokens_per_s=PROMPT / ttft.mean(),
        decode_tokens_per_s=(NEW - 1) / (latencies - ttft).mean(),
    )
    return Record(
        run_id=f"r{repeat}",
        point_id="p",
        scenario="sim",
        scenario_file="sim.yaml",
        model="tiny-gpt2",
        weights="random",
        task="text-generation",
        backend="eager",
        precision="fp32",
        batch_size=1,
        workload={"prompt_tokens": PROMPT, "new_tokens": NEW},
        device="cpu",
        repeat=repeat,
        status="ok",
        valid=True,
        metrics=metrics,
        memory=MemoryMetrics(host_rss_peak_bytes=400_000_000),
        cold_costs={"load_s": 1.0, "first_call_s": 0.1},
        warmup_calls=1,
        measured_time_s=float(latencies.sum()),
    )


# (single-repeat sd of log p10 latency, per-round a2 − a sd, session sd) measured 2026-11-23
# (docs/measurements/2026-11-23-gate-quality.md: "Noise (log p10 latency …)" and the sequential measurement)
NOISE = {"quiet": (0.062, 0.066, 0.028), "noisy": (0.117, 0.125, 0.059)}
# The same single-repeat sd as a heavy tail, as that page describes the VM ("most repeats run clean, some are
# slowed through", p10 of 42 ms against 27 ms): clean repeats N(0, 3%), a fraction TAIL_P of them ×1.55, per arm
# and round independently (no shared part: pairing gains nothing from it here). TAIL_P from the sd:
# p(1 − p)·log(1.55)² + 0.03² = sd².
SLOWED_THROUGH, CLEAN = 1.55, 0.03
TAIL_P = {
    f"{name}-tail": float((1 - np.sqrt(1 - 4 * (sd**2 - CLEAN**2) / np.log(SLOWED_THROUGH) ** 2)) / 2)
    for name, (sd, _, _) in NOISE.items()
}
POINTS = (1, 2, 4)  # batch sizes; base call time 20 ms · (1 + batch) / 2


def point_record(repeat: int, batch: int, latencies: np.ndarray, pair: str | None) -> Record:
    rec = record(repeat, latencies)
    return rec.model_copy(
        update={"batch_size": batch, "run_id": f"b{batch}-r{repeat}", "point_id": f"b{batch}", "pair": pair}
    )


def repeat_shift(rng, between: float, tail: float | None) -> float:
    """A repeat's log shift: N(0, between), or with a heavy `tail` (TAIL_P) clean N(0, CLEAN), sometimes ×1.55."""
    if tail is None:
        return rng.normal(0, between)
    return rng.normal(0, CLEAN) + (np.log(SLOWED_THROUGH) if rng.random() < tail else 0.0)


def plain_side(rng, name, slowdown, repeats, calls, between, within, session, tail=None) -> Side:
    shift = rng.normal(0, session)
    records = [
        point_record(
            r,
            b,
            0.010
            * (1 + b)
            * slowdown
            * np.exp(shift + repeat_shift(rng, between, tail) + rng.normal(0, within, calls)),
            None,
        )
        for b in POINTS
        for r in range(repeats)
    ]
    return Side(name, Path(name), records, ENV, None)


def paired_sides(rng, slowdown, rounds, calls, shared, own, within, tail=None) -> tuple[Side, Side]:
    rounds_noise = {(b, k): rng.normal(0, shared) if tail is None else 0.0 for b in POINTS for k in range(rounds)}

    def arm(name, factor):
        return Side(
            name,
            Path(name),
            [
                point_record(
                    k,
                    b,
                    0.010
                    * (1 + b)
                    * factor
                    * np.exp(rounds_noise[b, k] + repeat_shift(rng, own, tail) + rng.normal(0, within, calls)),
                    f"sim:b{b}:{k}",
                )
                for b in POINTS
                for k in range(rounds)
            ],
            ENV,
            None,
        )

    return arm("a", 1.0), arm("s", slowdown)


def few_repeats(args) -> None:
    config = load_config(None)
    if args.calibrated:  # the gate told the session noise it cannot see in the repeats (gate.yaml session_noise)
        config = config.model_copy(update={"session_noise": NOISE[args.noise.split(",")[0].removesuffix("-tail")][2]})
    if args.own_noise:  # each comparison's own repeats only: the gate before pooling
        config = config.model_copy(update={"repeat_noise": "own"})
    levels = [0.0, 0.10, 0.30]
    print(
        f"Simulated: {len(POINTS)} points, {args.calls} calls per repeat, call-to-call noise {args.within:.0%}, "
        f"{args.trials} trials per cell, default gate (gate.yaml defaults). Cells: gate failed (exit 1) / trials, "
        f"in brackets those with a `regression` verdict; gate session_noise {config.session_noise:.1%}, "
        f"repeat_noise {config.repeat_noise}.\n"
    )
    print("| noise | design | " + " | ".join("A/A" if x == 0 else f"+{x:.0%}" for x in levels) + " |")
    print("|---|---|" + "---|" * len(levels))
    rng = np.random.default_rng(args.seed)
    for noise in args.noise.split(","):
        tail = TAIL_P.get(noise)
        single, diff, session = NOISE[noise.removesuffix("-tail")]
        own = diff / np.sqrt(2)
        shared = float(np.sqrt(max(single**2 - own**2, 0.0)))
        for design, n in (("plain", 3), ("plain", 5), ("interleaved", 8)):
            cells = []
            for x in levels:
                results = []
                for _ in range(args.trials):
                    if design == "plain":
                        b = plain_side(rng, "b", 1.0, n, args.calls, single, args.within, session, tail)
                        c = plain_side(rng, "c", 1 + x, n, args.calls, single, args.within, session, tail)
                    else:
                        b, c = paired_sides(rng, 1 + x, n, args.calls, shared, own, args.within, tail)
                    results.append(compare(b, c, config))
                failed = sum(r.exit_code == 1 for r in results)
                regressed = sum(r.count("regression") > 0 for r in results)
                cells.append(f"{failed}/{args.trials} ({regressed})")
            label = f"{n} repeats a side" if design == "plain" else f"{n} rounds, paired"
            print(f"| {noise} | {label} | " + " | ".join(cells) + " |", flush=True)


def side(
    rng: np.random.Generator, name: str, slowdown: float, repeats: int, calls: int, between: float, within: float
) -> Side:
    records = [
        record(r, 0.020 * slowdown * np.exp(rng.normal(0, between) + rng.normal(0, within, calls)))
        for r in range(repeats)
    ]
    return Side(name, Path(name), records, ENV, None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--calls", type=int, default=30, help="measured calls per repeat")
    ap.add_argument("--within", type=float, default=0.05, help="call-to-call noise (log sd)")
    ap.add_argument("--between", default="0.005,0.01,0.015,0.02,0.03", help="run-to-run noise levels (log sd)")
    ap.add_argument("--slowdowns", default="0,0.05,0.075,0.10,0.15")
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--few-repeats", action="store_true", help="the few-repeats plan (see above)")
    ap.add_argument(
        "--noise",
        default="quiet,noisy",
        help="--few-repeats: measured noise levels: quiet, noisy (normal), quiet-tail, noisy-tail "
        "(the same sd "
        "as clean repeats plus a few slowed through)",
    )
    ap.add_argument(
        "--calibrated",
        action="store_true",
        help="--few-repeats: set the gate's session_noise to the (first) noise level's session sd",
    )
    ap.add_argument("--own-noise", action="store_true", help="--few-repeats: the gate with repeat_noise: own")
    args = ap.parse_args()
    if args.few_repeats:
        return few_repeats(args)
    config = load_config(None)
    rng = np.random.default_rng(args.seed)
    slowdowns = [float(x) for x in args.slowdowns.split(",")]
    t0 = time.monotonic()
    print(
        f"Simulated gate outcomes: {args.repeats} repeats a side, {args.calls} calls per repeat, call-to-call "
        f"noise {args.within:.0%}, {args.trials} comparisons per cell, default gate settings.\n"
    )
    print("| run-to-run noise | " + " | ".join("A/A" if s == 0 else f"+{s:.1%}" for s in slowdowns) + " |")
    print("|---|" + "---|" * len(slowdowns))
    for between in (float(x) for x in args.between.split(",")):
        cells = []
        for slow in slowdowns:
            failed = sum(
                compare(
                    side(rng, "b", 1.0, args.repeats, args.calls, between, args.within),
                    side(rng, "c", 1 + slow, args.repeats, args.calls, between, args.within),
                    config,
                ).exit_code
                == 1
                for _ in range(args.trials)
            )
            cells.append(f"{failed}/{args.trials}")
        print(f"| {between:.1%} | " + " | ".join(cells) + " |", flush=True)
    print(f"\n(cells: comparisons that failed the gate; {time.monotonic() - t0:.0f} s)")


if __name__ == "__main__":
    main()
