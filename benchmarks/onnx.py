"""ONNX files translated into Keras models: GradCAM on the translation vs on the Keras model
it was written from (goal <= 1.3x), and the translated forward vs onnxruntime (goal <= 2x).

The ONNX files are written here from Keras models (the bundled demo model, MobileNetV2) node by
node in the shapes PyTorch's exporter writes (NCHW input, Conv, BatchNormalization, Clip for
ReLU6, Pad, Flatten + Gemm, Softmax), so the two models have the same weights.

    python -m benchmarks.onnx export demo.onnx   # the demo model as an ONNX file
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks.cam import BATCH, paired_seconds  # noqa: E402


def keras_to_onnx(model, opset: int = 17):
    """The Keras model (Conv2D, DepthwiseConv2D, BatchNormalization, ReLU, ZeroPadding2D,
    MaxPooling2D, Add, GlobalAveragePooling2D, Dense layers) as an ONNX ModelProto with a
    channels-first input of free batch, height and width."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    nodes, constants, names = [], {}, {}

    def constant(name, value):
        constants[name] = np.asarray(value)
        return name

    def node(op_type, inputs, output, **attributes):
        nodes.append(helper.make_node(op_type, inputs, [output], **attributes))
        return output

    def activation(layer, tensor):
        name = getattr(getattr(layer, "activation", None), "__name__", "linear")
        if name == "linear":
            return tensor
        return node({"relu": "Relu", "softmax": "Softmax"}[name], [tensor], f"{layer.name}_act")

    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            names[id(layer.output)] = "image"
            continue
        inbound = layer._inbound_nodes[0].input_tensors
        given = [names[id(tensor)] for tensor in inbound]
        weights = layer.get_weights()
        out = layer.name
        if kind in ("Conv2D", "DepthwiseConv2D"):
            kernel = weights[0]
            if kind == "Conv2D":
                kernel, group = kernel.transpose(3, 2, 0, 1), 1
            else:
                height, width, channels, multiplier = kernel.shape
                kernel = kernel.reshape(height, width, channels * multiplier).transpose(2, 0, 1)
                kernel, group = kernel[:, None], channels
            inputs = [given[0], constant(f"{out}.weight", kernel)]
            if layer.use_bias:
                inputs.append(constant(f"{out}.bias", weights[1]))
            padding = {"auto_pad": "SAME_UPPER"} if layer.padding == "same" else {}
            output = node("Conv", inputs, f"{out}_linear" if _activated(layer) else out,
                          kernel_shape=list(kernel.shape[2:]), strides=list(layer.strides),
                          group=group, **padding)
            output = activation(layer, output)
        elif kind == "BatchNormalization":
            output = node("BatchNormalization", [given[0], *[
                constant(f"{out}.{part}", value) for part, value in zip(
                    ("weight", "bias", "mean", "var"), weights, strict=True)]], out,
                epsilon=layer.epsilon)
        elif kind == "ReLU":
            bounds = [constant(f"{out}.min", np.float32(0)), constant(f"{out}.max", np.float32(
                layer.max_value))] if layer.max_value else []
            output = node("Clip" if bounds else "Relu", [given[0], *bounds], out)
        elif kind == "ZeroPadding2D":
            (top, bottom), (left, right) = layer.padding
            output = node("Pad", [given[0], constant(f"{out}.pads", np.array(
                [0, 0, top, left, 0, 0, bottom, right]))], out)
        elif kind == "MaxPooling2D":
            output = node("MaxPool", given, out, kernel_shape=list(layer.pool_size),
                          strides=list(layer.strides))
        elif kind == "Add":
            output = node("Add", given, out)
        elif kind == "GlobalAveragePooling2D":
            output = node("Flatten", [node("GlobalAveragePool", given, out)], f"{out}_flat")
        elif kind == "Dense":
            output = node("Gemm", [given[0], constant(f"{out}.weight", weights[0].T),
                                   constant(f"{out}.bias", weights[1])],
                          f"{out}_linear" if _activated(layer) else out, transB=1)
            output = activation(layer, output)
        else:
            raise ValueError(f"keras_to_onnx does not write {kind} layers")
        names[id(layer.output)] = output
    graph = helper.make_graph(
        nodes, model.name,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info(names[id(model.output)], TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(value, np.float32 if np.asarray(value).dtype.kind
                                            == "f" else np.int64), key)
         for key, value in constants.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _activated(layer) -> bool:
    return getattr(getattr(layer, "activation", None), "__name__", "linear") != "linear"


def _models():
    import keras

    from cnnviz_cli.models.resolve import ModelRequest, resolve_model

    demo = resolve_model(ModelRequest("demo")).model
    return [("demo", demo, 128), ("mobilenetv2", keras.applications.MobileNetV2(weights=None),
                                  224)]


def measure() -> list[dict]:
    rows = []
    for name, model, size in _models():
        rows += _rows(name, model, size)
    return rows


def _rows(name: str, model, size: int) -> list[dict]:
    import numpy as np
    import onnxruntime
    import tensorflow as tf

    from cnnviz_cli.models.layers import last_feature_map
    from cnnviz_cli.models.onnx import translate
    from cnnviz_cli.techniques.cam import CamExplainer, CamOptions, Targets

    proto = keras_to_onnx(model)
    translated = translate(proto, (None, None, 3), True, (size, size)).model
    shape = (size, size, 3)
    inputs = np.random.default_rng(0).uniform(0, 1, (BATCH, *shape)).astype("float32")
    explainers = [CamExplainer(network, last_feature_map(network, (size, size)).path, shape)
                  for network in (translated, model)]
    gradcam = paired_seconds(*(
        lambda e=explainer: e(inputs, Targets(), ["gradcam"], CamOptions(batch_size=32))
        for explainer in explainers))
    # onnxruntime's threads spin after a run by default, and take the cores from the next
    # TensorFlow turn (1.7x slower); not spinning leaves onnxruntime's own time unchanged
    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(proto.SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
    channels_first = np.ascontiguousarray(inputs.transpose(0, 3, 1, 2))
    compiled = tf.function(lambda batch: translated(batch, training=False))
    difference = float(np.abs(compiled(inputs).numpy() - model.predict(inputs, verbose=0)).max())
    forward = paired_seconds(lambda: compiled(inputs).numpy(),
                             lambda: session.run(None, {"image": channels_first}))
    work = f"{name} {size}px batch {BATCH} (CPU)"
    return [
        {"benchmark": f"onnx gradcam {work}: translated ONNX vs its Keras model",
         **dict(zip(("ours_s", "reference_s", "ratio"), gradcam, strict=True)),
         "note": "the same weights written as ONNX (NCHW) and translated (outputs differ by "
                 f"{difference:.1e} at most); goal <= 1.3"},
        {"benchmark": f"onnx forward {work}: translated vs onnxruntime",
         **dict(zip(("ours_s", "reference_s", "ratio"), forward, strict=True)),
         "note": "compiled Keras forward of the translation vs onnxruntime's CPU session on "
                 "the same file (its threads not spinning between runs); goal <= 2"},
    ]


if __name__ == "__main__":
    if sys.argv[1:2] == ["export"] and len(sys.argv) == 3:
        from cnnviz_cli.models.resolve import ModelRequest, resolve_model

        with open(sys.argv[2], "wb") as file:
            file.write(keras_to_onnx(resolve_model(ModelRequest("demo")).model)
                       .SerializeToString())
    else:
        for row in measure():
            print(row)
