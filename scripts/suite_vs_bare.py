"""The suite's TTFT / TPOT / latency next to a bare Hugging Face loop, per precision, in one run.

    python scripts/suite_vs_bare.py [--model gpt2] [--precisions fp32,bf16] [--rounds 3] [--threads N]

Suite side: `bench run` of an eager scenario (the CPU suite's GPT-2 workload: 64-token prompt, 32 greedy tokens,
batch 1, random weights from the bundled config), fidelity off. Bare side: a separate process that builds the
same architecture with plain transformers calls (AutoConfig.for_model + AutoModelForCausalLM.from_config, default
init, .eval(), nothing else) and times, under torch.inference_mode with time.perf_counter:
  TTFT    = generate(max_new_tokens=1)            (prefill and the first token)
  latency = generate(max_new_tokens=new_tokens)  (min_new_tokens equal: no early stop)
  TPOT    = (latency p50 − TTFT p50) / (new_tokens − 1)
Suite and bare rounds alternate, so a busy period of a shared machine falls on both. Printed: p50 per side (the
median over rounds of each round's p50) and suite / bare. int8 has no bare counterpart (GPT-2's Conv1D layers are
not nn.Linear, which is all torchao quantizes without the suite's conversion) and is left out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BARE = r"""
import json, sys, time
import torch
from transformers import AutoConfig, AutoModelForCausalLM

config_path, precision, prompt, new, iters, seed = sys.argv[1:7]
prompt, new, iters, seed = int(prompt), int(new), int(iters), int(seed)
dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
torch.manual_seed(seed)
config = AutoConfig.for_model(**json.load(open(config_path)))
model = AutoModelForCausalLM.from_config(config, dtype=dtype).eval()
ids = torch.randint(0, config.vocab_size - 1, (1, prompt), generator=torch.Generator().manual_seed(seed))
mask = torch.ones_like(ids)
eos = config.vocab_size - 1

def timed(n):
    with torch.inference_mode():
        t0 = time.perf_counter()
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                             do_sample=False, num_beams=1, pad_token_id=eos, eos_token_id=eos)
        dt = time.perf_counter() - t0
    assert out.shape[1] == prompt + n
    return dt

timed(new); timed(1)  # cold calls, as the suite's first call and warm-up
ttft = [timed(1) for _ in range(iters)]
latency = [timed(new) for _ in range(iters)]
print(json.dumps({"ttft_s": ttft, "latency_s": latency, "threads": torch.get_num_threads()}))
"""

SCENARIO = """\
name: suite-vs-bare
task: text-generation
model: {{name: {model}}}
device: cpu
matrix: {{backend: [eager], precision: [{precision}], batch_size: [1]}}
workload: {{prompt_tokens: {prompt}, new_tokens: {new}}}
measure: {{warmup: 1, min_iterations: {iters}, min_time_s: 0, timeout_s: 1200, seed: {seed}}}
"""


def p50(xs):
    return statistics.median(xs)


def suite_round(model, precision, args, work: Path, k: int) -> dict:
    scen = work / f"suite-{precision}-{k}.yaml"
    scen.write_text(
        SCENARIO.format(
            model=model, precision=precision, prompt=args.prompt, new=args.new, iters=args.iters, seed=args.seed
        )
    )
    out = work / f"run-{precision}-{k}"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.cli", "run", str(scen), "--out", str(out), "--no-fidelity"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    from bench.results import read_records

    (record,) = read_records(out / "results.jsonl")
    if record.status != "ok":
        raise SystemExit(f"suite run failed ({proc.returncode}): {record.error}")
    m = record.metrics
    return {
        "ttft_s": m.ttft_s.p50,
        "tpot_s": m.tpot_s.p50,
        "latency_s": m.latency_s.p50,
        "threads": record.details.get("torch_threads"),
    }


def bare_round(config: Path, precision, args) -> dict:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            BARE,
            str(config),
            precision,
            str(args.prompt),
            str(args.new),
            str(args.iters),
            str(args.seed),
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=""),
    )
    if proc.returncode != 0:
        raise SystemExit(f"bare loop failed: {proc.stderr[-2000:]}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    ttft, latency = p50(data["ttft_s"]), p50(data["latency_s"])
    return {
        "ttft_s": ttft,
        "tpot_s": (latency - ttft) / (args.new - 1),
        "latency_s": latency,
        "threads": data["threads"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gpt2")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for both sides (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    config = REPO / "bench" / "models" / "configs" / f"{args.model}.json"
    precisions = args.precisions.split(",")
    rows = {p: {"suite": [], "bare": []} for p in precisions}
    with tempfile.TemporaryDirectory(prefix="suite-vs-bare-") as tmp:
        for k in range(args.rounds):
            for precision in precisions:
                first, second = ("suite", "bare") if k % 2 == 0 else ("bare", "suite")
                for side in (first, second):
                    res = (
                        suite_round(args.model, precision, args, Path(tmp), k)
                        if side == "suite"
                        else bare_round(config, precision, args)
                    )
                    rows[precision][side].append(res)
                    print(
                        f"round {k + 1} {precision} {side}: "
                        + ", ".join(f"{m} {res[m] * 1e3:.1f} ms" for m in ("ttft_s", "tpot_s", "latency_s")),
                        file=sys.stderr,
                    )
    threads = {side: {r["threads"] for p in precisions for r in rows[p][side]} for side in ("suite", "bare")}
    print(
        textwrap.dedent(f"""\
        model {args.model} (bundled config, random weights), batch 1, prompt {args.prompt}, {args.new} new tokens,
        {args.iters} timed calls per round and side, {args.rounds} rounds alternating suite/bare; torch threads:
        suite {sorted(threads["suite"])}, bare {sorted(threads["bare"])}. p50 = median over rounds of each round's p50.
        """)
    )
    print("| precision | metric | suite p50 (ms) | bare p50 (ms) | suite / bare |")
    print("|---|---|---:|---:|---:|")
    for precision in precisions:
        for metric in ("ttft_s", "tpot_s", "latency_s"):
            s = p50([r[metric] for r in rows[precision]["suite"]])
            b = p50([r[metric] for r in rows[precision]["bare"]])
            name = metric.removesuffix("_s").upper()
            print(f"| {precision} | {name} | {s * 1e3:.1f} | {b * 1e3:.1f} | {s / b:.2f} |")


if __name__ == "__main__":
    main()
