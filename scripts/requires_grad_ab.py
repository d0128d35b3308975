"""The cause behind issue 16, measured: one built model, a 1-token generate (prefill) with `requires_grad` on vs
off on every parameter, alternating, per dtype. Usage: python scripts/requires_grad_ab.py [--threads 1]"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench import models
from bench.workloads.text_generation import TextGeneration

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=None)
ap.add_argument("--rounds", type=int, default=6)
args = ap.parse_args()
if args.threads:
    torch.set_num_threads(args.threads)
for dtype in (torch.bfloat16, torch.float32):
    m = models.build(models.resolve("gpt2"), TextGeneration.model_class(), dtype, "cpu", 0)
    ids = torch.randint(0, 50000, (1, 64), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)

    def call(m=m, ids=ids, mask=mask):
        with torch.inference_mode():
            t0 = time.perf_counter()
            m.generate(input_ids=ids, attention_mask=mask, max_new_tokens=1, do_sample=False, pad_token_id=0)
            return time.perf_counter() - t0

    res = {True: [], False: []}
    for state in (True, False):  # a cold call each
        m.requires_grad_(state)
        call()
    for i in range(args.rounds):
        for state in (True, False) if i % 2 == 0 else (False, True):
            m.requires_grad_(state)
            res[state].append(call())
    on, off = statistics.median(res[True]), statistics.median(res[False])
    print(
        f"{dtype}: 1-token generate p50 requires_grad on {on * 1e3:.1f} ms, off {off * 1e3:.1f} ms, "
        f"off/on {off / on:.2f}"
    )
