#!/usr/bin/env bash
# The GPU check of issue 23, in one command of at most 10 minutes on a bare GPU machine (docs/compile-loop.md):
# calibrate; Llama-2-7B-shaped bs1 decode with eager, compile inside HF generate and compile with the decode loop
# (fp16 and int8); ONNX Runtime's CUDA provider on GPT-2 and BERT-base, and its TensorRT provider on GPT-2 (recorded
# unsupported with the reason where onnxruntime-gpu or TensorRT's libraries are absent).
# Writes to OUT (argument, else $OUT, else reports/gpu-check-<UTC time>): results.jsonl (every record),
# table.md (the short table), environment.txt, calibration.json, log.txt.
#
#   scripts/gpu_check.sh [OUT]        env: PYTHON (python3), BUDGET_S (570), FIDELITY_7B (0: 7B runs without the
#                                     fp32 reference, which costs a 27 GB model and a minute)
# Wheels in .whl/ (carried by the device tool) are installed into /tmp/site first.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-reports/gpu-check-$(date -u +%Y%m%dT%H%M%SZ)}}
PY=${PYTHON:-python3}
BUDGET_S=${BUDGET_S:-570}
START=$(date +%s)
WORK=$(mktemp -d /tmp/gpu-check-XXXX)
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1

export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 BENCH_CACHE_DIR="$WORK/cache"
if compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi

left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }

{
  date -u +%Y-%m-%dT%H:%M:%SZ
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
  "$PY" - <<'EOF'
import importlib
for name in ("torch", "transformers", "torchao", "onnxruntime", "onnxscript", "pydantic"):
    try:
        mod = importlib.import_module(name)
        print(name, getattr(mod, "__version__", "?"))
    except Exception as exc:
        print(name, "missing:", type(exc).__name__, str(exc).splitlines()[0][:120] if str(exc) else "")
try:
    import onnxruntime
    print("onnxruntime providers:", ", ".join(onnxruntime.get_available_providers()))
except Exception:
    pass
EOF
} | tee "$OUT/environment.txt"

if ! "$PY" -c "import bench.cli" 2>/dev/null; then
  "$PY" -c "import bench.cli"
  echo "bench does not import here: see docs/compile-loop.md for what this machine needs"; exit 1
fi

echo "== calibrate ($(left) s left)"
timeout 120 "$PY" -m bench.cli calibrate --device cuda
cp "$BENCH_CACHE_DIR"/calibration/*.json "$OUT/calibration.json" 2>/dev/null

# Most important first; a step that does not fit the time left is skipped and says so in table.md.
STEPS=(
  "llama-2-7b-compile-loop 200"
  "llama-2-7b-eager 90"
  "llama-2-7b-compile-generate 200"
  "gpt2-onnxruntime 90"
  "gpt2-onnxruntime-tensorrt 120"
  "bert-base-onnxruntime 60"
)
: > "$WORK/skipped.txt"
for step in "${STEPS[@]}"; do
  read -r name need <<< "$step"
  remaining=$(left)
  if (( remaining < need )); then
    echo "$name: skipped, $remaining s left of the ${BUDGET_S} s budget (needs about $need s)" | tee -a "$WORK/skipped.txt"
    continue
  fi
  fidelity=()
  [[ $name == llama-2-7b-* && ${FIDELITY_7B:-0} != 1 ]] && fidelity=(--no-fidelity)
  echo "== $name ($remaining s left)"
  timeout $(( remaining - 10 )) "$PY" -m bench.cli run "bench/suites/cuda-check/$name.yaml" --out "$WORK/runs/$name" \
    "${fidelity[@]}" || echo "$name: bench run exited $?"
done

cat "$WORK"/runs/*/results.jsonl > "$OUT/results.jsonl" 2>/dev/null
"$PY" scripts/gpu_check_table.py "$WORK/runs" --skipped "$WORK/skipped.txt" --environment "$OUT/environment.txt" \
  > "$OUT/table.md"
cat "$OUT/table.md"
echo "done in $(( $(date +%s) - START )) s; files in $OUT"
