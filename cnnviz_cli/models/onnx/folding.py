"""BatchNormalization folded into the Conv it follows, as onnxruntime (and PyTorch's exporter
in eval mode) do: the pair becomes one convolution whose kernel and bias carry the
normalisation, so TensorFlow runs one fused pass instead of three. The folded Conv takes the
BatchNormalization's output name; the map between the two exists no more."""

from collections import Counter

import numpy as np

from cnnviz_cli.models.onnx.values import Value


def folded_batch_norms(graph, values: dict[str, Value]) -> list:
    """`graph`'s nodes with each inference BatchNormalization that is the only reader of a
    Conv's output folded into that Conv; the folded weights are added to `values`."""
    readers = Counter([name for node in graph.node for name in node.input]
                      + [port.name for port in graph.output])
    nodes = list(graph.node)
    producers = {node.output[0]: index for index, node in enumerate(nodes)
                 if node.op_type == "Conv"}
    skipped = set()
    for index, node in enumerate(nodes):
        conv = producers.get(node.input[0]) if node.input else None
        if conv is not None and _foldable(node, nodes[conv], readers, values):
            nodes[conv] = _fold(nodes[conv], node, values)
            skipped.add(index)
    return [node for index, node in enumerate(nodes) if index not in skipped]


def _foldable(norm, conv, readers: Counter, values: dict) -> bool:
    """An inference, per-channel BatchNormalization of one output, alone reading the Conv,
    with its statistics and the Conv's weights all initialisers."""
    attributes = {attribute.name: attribute.i for attribute in norm.attribute}
    weights = [*norm.input[1:], *(name for name in conv.input[1:] if name)]
    return (norm.op_type == "BatchNormalization" and len(norm.input) == 5
            and attributes.get("training_mode", 0) == 0 and attributes.get("spatial", 1) == 1
            and len([name for name in norm.output if name]) == 1
            and readers[conv.output[0]] == 1
            and all(name in values and values[name].constant for name in weights))


def _fold(conv, norm, values: dict):
    """The Conv (NodeProto) computing `norm(conv(x))`, named after the normalisation's
    output."""
    from onnx import NodeProto

    gamma, beta, mean, variance = (values[name].data for name in norm.input[1:5])
    epsilon = next((attribute.f for attribute in norm.attribute if attribute.name == "epsilon"),
                   1e-5)
    scale = gamma / np.sqrt(variance + epsilon)
    kernel = values[conv.input[1]].data
    bias = values[conv.input[2]].data if len(conv.input) > 2 and conv.input[2] else 0.0
    output = norm.output[0]
    values[f"{output}.folded_kernel"] = Value(
        (kernel * scale.reshape(-1, *[1] * (kernel.ndim - 1))).astype(kernel.dtype))
    values[f"{output}.folded_bias"] = Value(((bias - mean) * scale + beta).astype(kernel.dtype))
    fused = NodeProto()
    fused.CopyFrom(conv)
    del fused.input[1:]
    fused.input.extend([f"{output}.folded_kernel", f"{output}.folded_bias"])
    fused.output[0] = output
    return fused
