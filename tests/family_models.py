"""Small generated ONNX files shaped as each model family's published files (input name,
shape and outputs), so a family's pre/post-processing is tested without its weights.

The network is a fixed, cheap function of the input that keeps its spatial detail: the
prediction is a weighted sum of the three channels (weights that tell the channels apart,
so a wrong normalisation shows), through a sigmoid for families whose files end in one and
as raw logits for BiRefNet. Side outputs are something else entirely, so reading the wrong
output shows too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CHANNEL_WEIGHTS = np.array([6.0, -2.0, -8.0], dtype=np.float32)
"""The prediction's weights on R, G and B."""

SHAPES: dict[str, dict[str, object]] = {
    # family: input name, side, outputs (names; which is the prediction), logits or sigmoid
    "isnet": {"input": "input_image", "side": 1024, "outputs": ["output"], "pred": 0},
    "isnet-anime": {"input": "img", "side": 1024, "outputs": ["mask"], "pred": 0},
    # rembg's u2net.onnx: seven outputs, the fused map first.
    "u2net": {
        "input": "input.1",
        "side": 320,
        "outputs": ["1959", "1960", "1961", "1962", "1963", "1964", "1965"],
        "pred": 0,
    },
    # BiRefNet's exports: logits; this one keeps two side maps before the final prediction.
    "birefnet": {
        "input": "input_image",
        "side": 1024,
        "outputs": ["side1", "side2", "output_image"],
        "pred": 2,
        "logits": True,
    },
    "bria-rmbg": {"input": "input", "side": 1024, "outputs": ["output"], "pred": 0},
}


def build_family_model(
    path: Path,
    family: str,
    *,
    side: int | None = None,
    channels: int = 3,
    output_channels: int = 1,
) -> Path:
    """An ONNX file shaped as ``family``'s files; ``side``, ``channels`` and
    ``output_channels`` change the shapes, to test the registry's checks."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    spec = SHAPES[family]
    side = side or int(spec["side"])  # type: ignore[call-overload]
    outputs: list[str] = list(spec["outputs"])  # type: ignore[call-overload]
    pred = int(spec["pred"])  # type: ignore[call-overload]
    weights = np.zeros((output_channels, channels, 1, 1), dtype=np.float32)
    weights[:, : min(channels, 3), 0, 0] = CHANNEL_WEIGHTS[: min(channels, 3)]
    nodes = [helper.make_node("Conv", [str(spec["input"]), "w"], ["logits"])]
    nodes.append(
        helper.make_node("Identity", ["logits"], [outputs[pred]])
        if spec.get("logits")
        else helper.make_node("Sigmoid", ["logits"], [outputs[pred]])
    )
    for index, name in enumerate(outputs):
        if index != pred:  # a side map unlike the prediction: its negation
            nodes.append(helper.make_node("Neg", ["logits"], [name]))
    graph = helper.make_graph(
        nodes,
        f"tiny-{family}",
        [
            helper.make_tensor_value_info(
                str(spec["input"]), TensorProto.FLOAT, [1, channels, side, side]
            )
        ],
        [
            helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, output_channels, side, side])
            for name in outputs
        ],
        initializer=[numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
