#!/usr/bin/env bash
# Wheels a bare GPU machine (Python 3.12, its own torch) needs to run bench, at the project's pins
# (constraints.txt), downloaded into DIR (default .whl) for the device tool to carry; scripts/gpu_check.sh
# installs them into /tmp/site. See docs/compile-loop.md. onnxruntime-gpu (255.6 MB) is left out: it is
# over the tool's 64 MiB per call.
#
#   scripts/gpu_wheels.sh [DIR]      env: PYTHON (python3), TRANSFORMERS=image|pinned (image, the default:
#                                    the machine's transformers 5.17 is in pyproject's range; pinned: carry
#                                    transformers, huggingface_hub and tokenizers at the pins)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-.whl}
PY=${PYTHON:-python3}
NAMES=(pydantic pydantic_core annotated-types typing-inspection torchao)
[[ ${TRANSFORMERS:-image} == pinned ]] && NAMES+=(transformers huggingface_hub tokenizers)
specs=()
for name in "${NAMES[@]}"; do
  pin=$(grep -iE "^${name//[-_]/[-_]}==" constraints.txt | head -1)
  [[ -n $pin ]] || { echo "no pin for $name in constraints.txt"; exit 2; }
  specs+=("$pin")
done
mkdir -p "$DIR"
"$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d "$DIR" "${specs[@]}"
du -sh "$DIR"
