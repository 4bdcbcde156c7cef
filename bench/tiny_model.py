"""A tiny ISNet-shaped ONNX model, so benchmarks measure the system rather than the network.

Shared by bench/jobs_bench.py and bench/sse_bench.py; needs the ``onnx`` package
(``.venv/bin/pip install onnx``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def build_tiny_model(path: Path, matmuls: int = 0) -> Path:
    """An ISNet-shaped ONNX model: optional 1024×1024 MatMuls, channel mean, sigmoid; any
    number of images per run (the batch dimension is free, as an accelerator runs it)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, weights, current = [], [], "input"
    for index in range(matmuls):
        weight = np.full((1024, 1024), 1.0 / 1024, dtype=np.float32)
        weights.append(numpy_helper.from_array(weight, f"w{index}"))
        nodes.append(helper.make_node("MatMul", [current, f"w{index}"], [f"m{index}"]))
        current = f"m{index}"
    nodes.append(helper.make_node("ReduceMean", [current], ["mean"], axes=[1], keepdims=1))
    nodes.append(helper.make_node("Sigmoid", ["mean"], ["output"]))
    graph = helper.make_graph(
        nodes,
        "tiny-isnet",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 1024, 1024])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 1, 1024, 1024])],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by any onnxruntime of the last years
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
