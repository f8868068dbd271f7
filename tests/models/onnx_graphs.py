"""Helpers of the ONNX tests: graphs written with onnx.helper, run by onnxruntime and by the
translation."""

import numpy as np

onnx = __import__("pytest").importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def graph_model(nodes, input_shape, constants=None, outputs=("y",), opset=17, name="graph"):
    """A model of `nodes` (onnx.helper nodes) with float input `x` of `input_shape` (None or a
    string: a free dimension) and the initialisers `constants`."""
    constants = constants or {}
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))],
        [helper.make_empty_tensor_value_info(output) for output in outputs],
        [numpy_helper.from_array(np.asarray(value), key) for key, value in constants.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def onnxruntime_outputs(model, inputs: np.ndarray) -> list[np.ndarray]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
    return session.run(None, {"x": inputs})


def translated_outputs(model, inputs: np.ndarray, channels_first: bool, size=None):
    """The translated model's outputs in file order (NCHW), and the translation."""
    from cnnviz_cli.models.onnx import translate

    dims = [dim.dim_value if dim.HasField("dim_value") else None
            for dim in model.graph.input[0].type.tensor_type.shape.dim][1:]
    image_shape = (dims[1], dims[2], dims[0]) if channels_first else tuple(dims)
    translation = translate(model, image_shape, channels_first, size)
    feed = np.transpose(inputs, (0, 2, 3, 1)) if channels_first else inputs
    results = translation.model(feed)
    results = results if isinstance(results, list | tuple) else [results]
    return [np.transpose(np.asarray(result), (0, 3, 1, 2)) if layout == "nhwc"
            else np.asarray(result)
            for result, layout in zip(results, translation.layouts, strict=True)], translation


def assert_close(ours, theirs, tolerance=1e-4):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    scale = max(1.0, float(np.abs(theirs).max())) if theirs.size else 1.0
    assert np.abs(ours - theirs).max(initial=0) <= tolerance * scale, \
        np.abs(ours - theirs).max()
