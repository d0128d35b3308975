"""int8 for ONNX Runtime (CPU) on the linear layers (MatMul/Gemm with a constant weight), verified afterwards.

`int8-dyn` = quantize_dynamic (int8 weights per channel, activations quantized at run time); `int8` =
weight-only MatMulNBits bits=8 (activations stay fp32). Quantized graphs are cached under their own key
(export_cache); each is verified by counting quantized and still-float linear layers and initializer bytes,
and the run fails if nothing was quantized.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.backends.onnxruntime.export_cache import CACHE_FORMAT, META_FILE, cached, digest
from bench.backends.quantize import QuantizationNotApplied
from bench.cache import cache_dir
from bench.results import Quantization

QUANTIZED_OPS = (
    "MatMulInteger",
    "MatMulNBits",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
    "QGemm",
    "QLinearMatMul",
)
PASS_THROUGH = ("Transpose", "Identity", "Cast", "Reshape", "DequantizeLinear")  # between a weight and its MatMul


def _graphs(graph: Any):
    """A graph and every subgraph in it (If/Loop bodies)."""
    import onnx

    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _graphs(g)


def initializer_bytes(model: Any) -> int:
    """Bytes of every initializer, from its shape and type (external data included, nothing loaded)."""
    from onnx.helper import tensor_dtype_to_np_dtype

    total = 0
    for graph in _graphs(model.graph):
        for t in graph.initializer:
            count = 1
            for d in t.dims:
                count *= d
            try:
                total += count * tensor_dtype_to_np_dtype(t.data_type).itemsize
            except (KeyError, TypeError, ValueError):
                total += len(t.raw_data)
    return total


def linear_layers(model: Any) -> tuple[Counter, int]:
    """(quantized linear nodes by op type, float MatMul/Gemm nodes whose weight is a constant). A weight
    is constant when it is an initializer, or comes from one through Transpose/Identity/Cast/Reshape/
    DequantizeLinear (GPT-2's output projection is the transposed, tied embedding)."""
    quantized: Counter = Counter()
    left = 0
    for graph in _graphs(model.graph):
        constants = {t.name for t in graph.initializer}
        producers = {out: node for node in graph.node for out in node.output}

        def constant(name: str, depth: int = 0) -> bool:
            if name in constants:  # noqa: B023 (called within this iteration)
                return True
            node = producers.get(name)  # noqa: B023 (called within this iteration)
            if node is None or depth > 8:
                return False
            if node.op_type == "Constant":
                return True
            return node.op_type in PASS_THROUGH and bool(node.input) and constant(node.input[0], depth + 1)

        for node in graph.node:
            if node.op_type in QUANTIZED_OPS:
                quantized[node.op_type] += 1
            elif node.op_type in ("MatMul", "Gemm") and len(node.input) > 1 and constant(node.input[1]):
                left += 1
    return quantized, left


def verify_quantization(before: Any, after: Any, precision: str, method: str) -> Quantization:
    """Count what the quantizer did to the graph; raise QuantizationNotApplied when it did not apply."""
    quantized, left = linear_layers(after)
    ops = Counter(node.op_type for graph in _graphs(after.graph) for node in graph.node)
    summary = Quantization(
        method=method,
        quantized_layers=sum(quantized.values()),
        float_layers_left=left,
        weight_bytes_before=initializer_bytes(before),
        weight_bytes_after=initializer_bytes(after),
    )
    _, float_before = linear_layers(before)
    if summary.quantized_layers == 0:
        raise QuantizationNotApplied(
            f"{precision}: {method} quantized none of the {float_before} linear "
            "layers (MatMul/Gemm with a constant weight); nothing would be int8"
        )
    if precision == "int8-dyn" and ops["DynamicQuantizeLinear"] == 0:
        raise QuantizationNotApplied(
            f"{precision}: no DynamicQuantizeLinear in the graph: activations would not be quantized"
        )
    if precision == "int8" and ops["DynamicQuantizeLinear"]:
        raise QuantizationNotApplied(
            f"{precision}: weight-only quantization left DynamicQuantizeLinear "
            "nodes: activations would be quantized too"
        )
    if summary.weight_bytes_after >= summary.weight_bytes_before:
        raise QuantizationNotApplied(
            f"{precision}: weight bytes did not shrink ({summary.weight_bytes_before} -> {summary.weight_bytes_after})"
        )
    return summary


QUANT_METHODS = {
    "int8-dyn": "onnxruntime quantize_dynamic (MatMul/Gemm, QInt8 weights per channel, uint8 activations)",
    "int8": "onnxruntime MatMulNBits bits=8 block_size=32 symmetric, accuracy_level unset (weight-only, fp32 "
    "activations)",
}
TWO_GB = 2 * 1024**3  # protobuf's limit: bigger models keep their weights in an external data file


def gemm_to_matmul(model: Any) -> int:
    """Rewrite Gemm(A, W, b) with a constant W as MatMul(A, W) + Add(b): the same math, in the form
    MatMulNBitsQuantizer handles (it quantizes MatMul only; GPT-2's Conv1D layers export as Gemm).
    Returns how many were rewritten."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    nodes, rewritten = [], 0
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if (
            node.op_type != "Gemm"
            or node.input[1] not in weights
            or attrs.get("transA", 0)
            or attrs.get("alpha", 1.0) != 1.0
            or attrs.get("beta", 1.0) != 1.0
        ):
            nodes.append(node)
            continue
        weight = node.input[1]
        if attrs.get("transB", 0):
            transposed = np.ascontiguousarray(numpy_helper.to_array(weights[weight]).T)
            weight = f"{weight}_transposed_for_matmul"
            graph.initializer.append(numpy_helper.from_array(transposed, weight))
        has_bias = len(node.input) > 2 and node.input[2]
        product = f"{node.output[0]}_matmul" if has_bias else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], weight], [product], name=f"{node.name}_MatMul"))
        if has_bias:
            nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{node.name}_Add"))
        rewritten += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return rewritten


def quantize(source: Path, precision: str) -> tuple[Path, str, dict[str, Any]]:
    """(directory with the quantized model, "hit" | "miss", its metadata): the exported model in
    `source`, quantized and verified; cached under a key of the export's key and the method."""
    import onnx

    source_meta = json.loads((source / META_FILE).read_text())
    key = digest(
        {
            "format": CACHE_FORMAT,
            "export": source_meta["key"],
            "precision": precision,
            "method": QUANT_METHODS[precision],
        }
    )

    def build(out: Path) -> dict[str, Any]:
        for f in source.iterdir():  # configs (and anything else the export wrote) travel with the graph
            if f.is_file() and f.suffix != ".onnx" and not f.name.startswith(("model.onnx", META_FILE)):
                shutil.copy2(f, out / f.name)
        src, dst = source / "model.onnx", out / "model.onnx"
        external = initializer_bytes(onnx.load(src, load_external_data=False)) > TWO_GB * 0.9
        t0 = time.perf_counter()
        details: dict[str, Any] = {}
        if precision == "int8-dyn":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(
                src,
                dst,
                op_types_to_quantize=["MatMul", "Gemm"],
                per_channel=True,
                reduce_range=False,
                weight_type=QuantType.QInt8,
                use_external_data_format=external,
            )
        else:
            from onnxruntime.quantization.matmul_nbits_quantizer import (
                DefaultWeightOnlyQuantConfig,
                MatMulNBitsQuantizer,
            )

            graph = onnx.load(src)
            details["gemm_rewritten_as_matmul"] = gemm_to_matmul(graph)
            quantizer = MatMulNBitsQuantizer(
                graph, algo_config=DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=True, bits=8)
            )
            quantizer.process()
            quantizer.model.save_model_to_file(str(dst), use_external_data_format=external)
        seconds = time.perf_counter() - t0
        summary = verify_quantization(
            onnx.load(src, load_external_data=False),
            onnx.load(dst, load_external_data=False),
            precision,
            QUANT_METHODS[precision],
        )
        return {
            "kind": "quantized",
            "key": key,
            "source": source_meta["key"],
            "quantize_s": seconds,
            "quantization": summary.model_dump(),
            "details": details,
        }

    entry = cache_dir("onnx") / key
    status, meta = cached(entry, build)
    return entry, status, meta
