"""Datasheet peaks of common NVIDIA GPUs: memory bandwidth (bytes/s) and *dense* matmul throughput per dtype
(FLOP/s; int8 OP/s), with sources, matched on `torch.cuda.get_device_name()`; an unmatched name gets no
datasheet ceiling (docs/roofline.md, "Datasheet ceilings")."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

GB = 1e9
T = 1e12


@dataclass(frozen=True)
class Datasheet:
    name: str  # what the tables call it
    pattern: str  # regex searched in the device name (case-insensitive)
    memory_bytes_per_s: float
    matmul_flops_per_s: dict[str, float]  # dtype -> dense peak; a dtype left out is unknown
    source: str
    unknown: dict[str, str] = field(default_factory=dict)  # dtype -> why there is no figure


def _dense(fp32: float, tf32: float, bf16: float, fp16: float, int8: float) -> dict[str, float]:
    return {"fp32": fp32 * T, "tf32": tf32 * T, "bf16": bf16 * T, "fp16": fp16 * T, "int8": int8 * T}


# A100: NVIDIA A100 Tensor Core GPU datasheet (nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf,
# https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf):
# FP32 19.5 TFLOPS, TF32 156 | 312*, BF16 312 | 624*, FP16 312 | 624*, INT8 624 | 1248* TOPS (* sparsity);
# memory bandwidth 40GB PCIe 1,555 GB/s, 80GB PCIe 1,935 GB/s, 40GB SXM 1,555 GB/s, 80GB SXM 2,039 GB/s
# (also at https://glennklockwood.com/garden/processors/A100, which cites that datasheet).
_A100 = _dense(19.5, 156, 312, 312, 624)
# H100: NVIDIA H100 Tensor Core GPU datasheet (https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet),
# "* with sparsity", dense = half: SXM FP32 67, TF32 989*, BF16/FP16 1,979*, INT8 3,958* TOPS, 3.35 TB/s;
# PCIe FP32 51, TF32 756*, BF16/FP16 1,513*, INT8 3,026* TOPS, 2 TB/s (80 GB HBM2e). Cross-checked with the
# datasheet table reproduced at https://archive-lib.hpctech.co.jp/gpuproduct/nvidia-h100.html and the H100
# whitepaper figures at https://glennklockwood.com/garden/processors/h100 (dense BF16 989.4, TF32 494.7).
_H100_SXM = _dense(67, 989 / 2, 1979 / 2, 1979 / 2, 3958 / 2)
_H100_PCIE = _dense(51, 756 / 2, 1513 / 2, 1513 / 2, 3026 / 2)

DATASHEETS: tuple[Datasheet, ...] = (
    Datasheet("A100 SXM4 80GB", r"A100.*SXM.*80GB", 2039 * GB, _A100, "NVIDIA A100 datasheet (r4)"),
    Datasheet("A100 SXM4 40GB", r"A100.*SXM.*40GB", 1555 * GB, _A100, "NVIDIA A100 datasheet (r4)"),
    Datasheet("A100 PCIe 80GB", r"A100.*(80GB.*PCIE|PCIE.*80GB)", 1935 * GB, _A100, "NVIDIA A100 datasheet (r4)"),
    Datasheet("A100 PCIe 40GB", r"A100.*(40GB.*PCIE|PCIE.*40GB)", 1555 * GB, _A100, "NVIDIA A100 datasheet (r4)"),
    # torch names the SXM5 part "NVIDIA H100 80GB HBM3"; the PCIe card "NVIDIA H100 PCIe".
    Datasheet("H100 SXM", r"H100( SXM| 80GB HBM3)", 3350 * GB, _H100_SXM, "NVIDIA H100 datasheet"),
    Datasheet("H100 PCIe", r"H100 PCIE", 2000 * GB, _H100_PCIE, "NVIDIA H100 datasheet"),
    # H200: NVIDIA H200 Tensor Core GPU datasheet (https://www.nvidia.com/en-us/data-center/h200/), H200 SXM:
    # FP32 67, TF32 989*, BF16/FP16 1,979*, INT8 3,958* TOPS (* sparsity), 4.8 TB/s HBM3e: the H100 SXM's
    # compute with faster memory. "NVIDIA H200" is the SXM part; H200 NVL (lower clocks) is not matched.
    Datasheet("H200 SXM", r"(?<!G)H200(?! NVL)", 4800 * GB, _H100_SXM, "NVIDIA H200 datasheet"),
    # L4: NVIDIA L4 Tensor Core GPU datasheet (https://www.nvidia.com/en-us/data-center/l4/): FP32 30.3 TFLOPS,
    # TF32 120*, BF16/FP16 242*, INT8 485* TOPS (* sparsity), 300 GB/s GDDR6.
    Datasheet("L4", r"\bL4$", 300 * GB, _dense(30.3, 60, 121, 121, 242.5), "NVIDIA L4 datasheet"),
    # L40S: NVIDIA L40S datasheet (https://www.nvidia.com/en-us/data-center/l40s/): FP32 91.6 TFLOPS,
    # TF32 183 | 366*, BF16/FP16 362.05 | 733*, INT8 733 | 1,466* TOPS, 864 GB/s GDDR6 (the L40/L40S
    # datasheet table is reproduced at https://www.mullet.se/product.html?product_id=355414).
    Datasheet("L40S", r"\bL40S\b", 864 * GB, _dense(91.6, 183, 362.05, 362.05, 733), "NVIDIA L40S datasheet"),
    # A10G: AWS's variant of the A10 (EC2 G5). NVIDIA publishes no A10G datasheet; 24 GB GDDR6 at 600 GB/s is
    # the A10's (NVIDIA A10 datasheet, https://www.nvidia.com/en-us/data-center/products/a10-gpu/; Baseten,
    # "NVIDIA A10 vs A10G for ML model inference", https://www.baseten.co/blog/nvidia-a10-vs-a10g-for-ml-model-inference/:
    # same memory and bandwidth, different tensor compute). The A10's tensor figures would be wrong for it, so
    # none are claimed: an A10G run gets a datasheet bandwidth fraction, and its calibrated compute ceiling.
    Datasheet(
        "A10G",
        r"\bA10G\b",
        600 * GB,
        {},
        "NVIDIA A10 datasheet (memory); Baseten A10 vs A10G",
        unknown={
            d: "NVIDIA publishes no A10G datasheet (AWS-only part; its tensor rates differ from the A10's)"
            for d in ("fp32", "tf32", "bf16", "fp16", "int8")
        },
    ),
    # RTX 4090: NVIDIA Ada GPU architecture whitepaper v2.1, appendix table "GeForce RTX 4090"
    # (https://images.nvidia.com/aem-dam/Solutions/geforce/ada/nvidia-ada-gpu-architecture.pdf): FP32 82.6
    # TFLOPS, TF32 82.6 | 165.2*, FP16/BF16 with FP32 accumulate 165.2 | 330.4*, INT8 660.6 | 1321.2* TOPS;
    # 1,008 GB/s GDDR6X.
    Datasheet(
        "RTX 4090",
        r"RTX 4090$",
        1008 * GB,
        _dense(82.6, 82.6, 165.2, 165.2, 660.6),
        "NVIDIA Ada architecture whitepaper",
    ),
)


def lookup(device_name: str | None) -> Datasheet | None:
    """The datasheet of a CUDA device by its torch name ("NVIDIA A100-SXM4-80GB"), or None when unknown."""
    if not device_name:
        return None
    for sheet in DATASHEETS:
        if re.search(sheet.pattern, device_name.strip(), re.IGNORECASE):
            return sheet
    return None
