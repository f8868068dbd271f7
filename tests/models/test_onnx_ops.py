"""Every translated ONNX op against onnxruntime, on random inputs, per attribute variant."""

import numpy as np
import pytest
from onnx_graphs import (
    assert_close,
    graph_model,
    helper,
    onnxruntime_outputs,
    translated_outputs,
)

pytest.importorskip("onnxruntime")
RNG = np.random.default_rng(0)
IMAGE = (2, 4, 6, 5)  # NCHW, non-square


def weights(*shape):
    return RNG.normal(size=shape).astype(np.float32)


def case(op_type, shape=IMAGE, attributes=None, constants=None, inputs=None, opset=17,
         channels_first=None, before=(), outputs=1, ident=""):
    """One row: `op_type` on input x (and its constants), as pytest.param."""
    constants = constants or {}
    names = inputs or ["x", *constants]
    outs = ["y"] if outputs == 1 else [f"y{i}" for i in range(outputs)]
    nodes = [*before, helper.make_node(op_type, names, outs, **(attributes or {}))]
    first = len(shape) == 4 if channels_first is None else channels_first
    model = graph_model(nodes, shape, constants, outs, opset)
    label = f"{op_type}-{ident or opset}"
    return pytest.param(model, shape, first, id=label)


SIGMOID = (helper.make_node("Sigmoid", ["x"], ["s"]),)
ABS = (helper.make_node("Abs", ["x"], ["a"]),)
SHAPE_CHAIN = (helper.make_node("Shape", ["x"], ["shape"]),
               helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
               helper.make_node("Unsqueeze", ["batch", "zeros"], ["batch1"]),
               helper.make_node("Concat", ["batch1", "rest"], ["target"], axis=0))
CHAIN = {"zero": np.array(0, np.int64), "zeros": np.array([0], np.int64)}
CHANNEL = weights(4, 1, 1)
i64 = lambda *values: np.array(values, np.int64)  # noqa: E731
f32 = lambda *values: np.array(values, np.float32)  # noqa: E731

CASES = [
    case("Conv", constants={"w": weights(6, 4, 3, 3), "b": weights(6)}, ident="3x3-pad1",
         attributes={"pads": [1, 1, 1, 1]}),
    case("Conv", constants={"w": weights(6, 4, 3, 3), "b": weights(6)}, ident="stride2",
         attributes={"pads": [1, 1, 1, 1], "strides": [2, 2]}),
    case("Conv", constants={"w": weights(6, 4, 1, 1)}, ident="1x1-no-bias"),
    case("Conv", constants={"w": weights(6, 4, 3, 3)}, ident="dilated",
         attributes={"pads": [2, 2, 2, 2], "dilations": [2, 2]}),
    case("Conv", constants={"w": weights(4, 1, 3, 3), "b": weights(4)}, ident="depthwise",
         attributes={"pads": [1, 1, 1, 1], "group": 4}),
    case("Conv", constants={"w": weights(8, 1, 3, 3)}, ident="depthwise-multiplier",
         attributes={"group": 4, "strides": [2, 2]}),
    case("Conv", constants={"w": weights(6, 2, 3, 3)}, ident="grouped",
         attributes={"group": 2, "pads": [0, 1, 2, 1]}),
    case("Conv", constants={"w": weights(6, 4, 3, 3)}, ident="same-upper",
         attributes={"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    case("Conv", constants={"w": weights(4, 1, 3, 3)}, ident="depthwise-same-upper",
         attributes={"auto_pad": "SAME_UPPER", "strides": [2, 2], "group": 4}),
    case("Conv", constants={"w": weights(6, 4, 3, 5)}, ident="non-square",
         attributes={"pads": [1, 2, 1, 2]}),
    case("ConvTranspose", constants={"w": weights(4, 3, 3, 3), "b": weights(3)},
         attributes={"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]},
         ident="stride2-pad1-output-padding"),
    case("ConvTranspose", constants={"w": weights(4, 3, 2, 2)}, attributes={"strides": [2, 2]},
         ident="2x2"),
    case("ConvTranspose", constants={"w": weights(4, 3, 4, 4)}, ident="4x4-pad1",
         attributes={"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    case("BatchNormalization", ident="4d", attributes={"epsilon": 1e-3},
         constants={"g": weights(4), "b": weights(4), "m": weights(4),
                    "v": np.abs(weights(4)) + 0.5}),
    case("BatchNormalization", shape=(3, 4), ident="2d",
         constants={"g": weights(4), "b": weights(4), "m": weights(4),
                    "v": np.abs(weights(4)) + 0.5}),
    case("InstanceNormalization", constants={"g": weights(4), "b": weights(4)}),
    case("LayerNormalization", shape=(2, 5, 8), constants={"g": weights(8), "b": weights(8)},
         ident="tokens"),
    case("LayerNormalization", constants={"g": weights(6, 5)}, attributes={"axis": 2},
         ident="4d-axis2"),
    case("Relu"), case("LeakyRelu", attributes={"alpha": 0.1}), case("Sigmoid"), case("Tanh"),
    case("PRelu", constants={"slope": weights(4, 1, 1)}),
    case("Elu", attributes={"alpha": 0.7}), case("HardSigmoid"), case("HardSwish"),
    case("Erf"), case("Softplus"), case("Neg"), case("Exp"),
    case("Gelu", opset=20, ident="exact"),
    case("Gelu", opset=20, attributes={"approximate": "tanh"}, ident="tanh"),
    case("Clip", constants={"low": f32(0), "high": f32(6)}, ident="relu6", opset=13),
    case("Clip", constants={"low": f32(-0.5), "high": f32(1)}, ident="bounds", opset=13),
    case("Clip", inputs=["x", "", "high"], constants={"high": f32(0.3)}, ident="max-only"),
    case("Clip", attributes={"min": -0.2, "max": 0.4}, opset=9, ident="attributes"),
    case("Sqrt", inputs=["a"], before=ABS),
    case("Reciprocal", inputs=["s"], before=SIGMOID),
    case("Pow", inputs=["a", "e"], before=ABS, constants={"e": f32(1.5)}),
    case("Add", inputs=["x", "s"], before=SIGMOID, ident="computed"),
    case("Add", constants={"c": CHANNEL}, ident="channel-constant"),
    case("Sub", inputs=["x", "s"], before=SIGMOID),
    case("Mul", constants={"c": weights(5)}, ident="width-constant"),
    case("Div", inputs=["x", "s"], before=SIGMOID),
    case("Equal", inputs=["x", "x"], ident="self"),
    case("Where", inputs=["condition", "x", "s"], before=SIGMOID,
         constants={"condition": RNG.random((6, 5)) > 0.5}),
    case("MatMul", shape=(2, 5, 8), constants={"w": weights(8, 3)}, ident="dense"),
    case("MatMul", shape=(2, 5, 8), inputs=["x", "t"],
         before=(helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 1]),), ident="computed"),
    case("MatMul", inputs=["x", "t"], before=(
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 1, 3, 2]),), ident="4d"),
    case("Gemm", shape=(3, 8), constants={"w": weights(5, 8), "c": weights(5)},
         attributes={"transB": 1, "alpha": 0.5, "beta": 2.0}),
    case("Flatten", ident="axis1"), case("Flatten", attributes={"axis": 2}, ident="axis2"),
    case("Reshape", constants={"shape": i64(0, -1)}, ident="keep-batch"),
    case("Reshape", constants={"shape": i64(2, 4, 30)}, ident="3d"),
    case("Reshape", inputs=["x", "target"], before=SHAPE_CHAIN,
         constants={**CHAIN, "rest": i64(-1, 5)}, ident="shape-chain"),
    case("Transpose", attributes={"perm": [0, 2, 3, 1]}, ident="to-nhwc"),
    case("Transpose", attributes={"perm": [0, 1, 3, 2]}, ident="swap-hw"),
    case("Transpose", shape=(2, 5, 8), attributes={"perm": [0, 2, 1]}, ident="3d"),
    case("Squeeze", shape=(2, 4, 1, 5), constants={"axes": i64(2)}, ident="13"),
    case("Squeeze", shape=(2, 4, 1, 5), attributes={"axes": [2]}, opset=11, ident="11"),
    case("Unsqueeze", shape=(2, 5, 8), constants={"axes": i64(1)}, ident="13"),
    case("Unsqueeze", shape=(2, 8), attributes={"axes": [2, 3]}, opset=11, ident="11"),
    case("Concat", inputs=["x", "s"], before=SIGMOID, attributes={"axis": 1}, ident="channels"),
    case("Concat", inputs=["x", "s"], before=SIGMOID, attributes={"axis": -1}, ident="width"),
    case("Split", attributes={"axis": 1}, outputs=2, ident="equal"),
    case("Split", constants={"split": i64(1, 3)}, attributes={"axis": 1}, outputs=2,
         ident="sizes"),
    case("Split", attributes={"axis": 2, "split": [2, 4]}, outputs=2, opset=11,
         ident="attribute"),
    case("Split", attributes={"axis": 3, "num_outputs": 2}, outputs=2, opset=18,
         ident="num-outputs"),
    case("Slice", attributes={"starts": [1], "ends": [3], "axes": [1]}, opset=9),
    case("Slice", constants={"starts": i64(1, -1), "ends": i64(9999, -6), "axes": i64(2, 3),
                             "steps": i64(2, -2)}, ident="steps"),
    case("Gather", shape=(2, 5, 8), constants={"i": i64(0).reshape(())},
         attributes={"axis": 1}, ident="token"),
    case("Gather", constants={"i": i64(3, 0, -1)}, attributes={"axis": 1}, ident="channels"),
    case("Add", inputs=["x", "zeros_like"], ident="ConstantOfShape", before=(
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("ConstantOfShape", ["shape"], ["zeros_like"],
                         value=helper.make_tensor("v", 1, [1], [0.5])))),
    case("Add", inputs=["x", "half"], constants={"two": f32(2)}, ident="Shape-Cast", before=(
        helper.make_node("Shape", ["x"], ["shape"], start=3),
        helper.make_node("Cast", ["shape"], ["float"], to=1),
        helper.make_node("Div", ["float", "two"], ["half"]))),
    case("Identity"), case("Dropout"),
    case("Add", inputs=["x", "normalised"], ident="folded-BatchNormalization", before=(
        helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["normalised"]),),
        constants={"c": weights(1, 4, 6, 5), "g": weights(4), "b": weights(4), "m": weights(4),
                   "v": np.abs(weights(4)) + 0.5}),
    case("Add", inputs=["x", "c"], ident="Constant", before=(helper.make_node(
        "Constant", [], ["c"], value=helper.make_tensor("v", 1, [5], weights(5))),)),
    case("Log", inputs=["s"], before=SIGMOID), case("Floor"), case("Ceil"),
    case("Max", inputs=["x", "s", "c"], before=SIGMOID, constants={"c": CHANNEL}, ident="three"),
    case("Min", inputs=["x", "s"], before=SIGMOID),
    case("Less", inputs=["x", "s"], before=SIGMOID),
    case("Greater", constants={"c": CHANNEL}),
    case("Not", inputs=["e"], before=(helper.make_node("Equal", ["x", "x"], ["e"]),)),
    case("And", inputs=["g", "l"], before=(
        helper.make_node("Greater", ["x", "zero"], ["g"]),
        helper.make_node("Less", ["x", "one"], ["l"])), constants={"zero": f32(0),
                                                                  "one": f32(1)}),
    case("Or", inputs=["g", "l"], before=(
        helper.make_node("Greater", ["x", "one"], ["g"]),
        helper.make_node("Less", ["x", "zero"], ["l"])), constants={"zero": f32(0),
                                                                  "one": f32(1)}),
    case("ReduceMin", attributes={"axes": [1], "keepdims": 1}, opset=13, ident="channels"),
    case("ReduceProd", shape=(2, 5, 3), attributes={"axes": [2], "keepdims": 0}, opset=13,
         ident="dropped"),
    case("Gemm", shape=(3, 8), inputs=["x", "x"], attributes={"transB": 1, "alpha": 0.5},
         ident="computed"),
    case("Pad", constants={"pads": i64(0, 0, 1, 2, 0, 0, 3, 0), "v": f32(0.5)}, ident="constant"),
    case("Pad", constants={"pads": i64(0, 0, 2, 1, 0, 0, 1, 2)}, attributes={"mode": "reflect"},
         ident="reflect"),
    case("Pad", constants={"pads": i64(0, 0, 1, 1, 0, 0, 1, 1)}, attributes={"mode": "edge"},
         ident="edge"),
    case("Resize", inputs=["x", "", "scales"], constants={"scales": f32(1, 1, 2, 2)},
         attributes={"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                     "nearest_mode": "floor"}, ident="nearest-asymmetric"),
    case("Resize", inputs=["x", "", "scales"], constants={"scales": f32(1, 1, 2, 3)},
         ident="nearest-half-pixel"),
    case("Resize", inputs=["x", "", "scales"], constants={"scales": f32(1, 1, 2, 2)},
         attributes={"mode": "linear"}, ident="linear-half-pixel"),
    case("Resize", inputs=["x", "", "", "sizes"], constants={"sizes": i64(2, 4, 9, 7)},
         attributes={"mode": "linear", "coordinate_transformation_mode": "align_corners"},
         ident="linear-align-corners"),
    case("Resize", inputs=["x", "", "", "sizes"], constants={"sizes": i64(2, 4, 3, 4)},
         attributes={"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"},
         ident="linear-down"),
    case("Upsample", constants={"scales": f32(1, 1, 2, 2)}, opset=9),
    case("MaxPool", attributes={"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
         ident="resnet-stem"),
    case("MaxPool", attributes={"kernel_shape": [2, 2], "strides": [2, 2]}, ident="2x2"),
    case("MaxPool", attributes={"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1},
         ident="ceil"),
    case("AveragePool", attributes={"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]},
         ident="exclude-pad"),
    case("AveragePool", attributes={"kernel_shape": [3, 3], "strides": [2, 2],
                                    "auto_pad": "SAME_UPPER"}, ident="same-upper"),
    case("MaxPool", attributes={"kernel_shape": [3, 3], "strides": [2, 2],
                                "auto_pad": "SAME_LOWER"}, ident="same-lower"),
    case("AveragePool", attributes={"kernel_shape": [3, 3], "pads": [1, 1, 1, 1],
                                    "strides": [2, 2], "count_include_pad": 1},
         ident="include-pad"),
    case("AveragePool", attributes={"kernel_shape": [2, 2], "strides": [2, 2]}, ident="2x2"),
    case("AveragePool", attributes={"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1},
         ident="ceil"),
    case("GlobalAveragePool"), case("GlobalMaxPool"),
    case("ReduceMean", attributes={"axes": [2, 3]}, opset=13, ident="spatial"),
    case("ReduceSum", constants={"axes": i64(1)}, attributes={"keepdims": 0}, opset=13,
         ident="channels-dropped"),
    case("ReduceMax", constants={"axes": i64(-1)}, opset=18, ident="input-axes"),
    case("Softmax", attributes={"axis": 1}, ident="channels"),
    case("Softmax", shape=(2, 5, 8), ident="last"),
    case("Softmax", shape=(2, 4, 3, 5), attributes={"axis": 1}, opset=11, ident="11-flattened"),
    case("LogSoftmax", shape=(3, 7), ident="rows"),
    case("Expand", shape=(2, 1, 4), constants={"shape": i64(2, 3, 4)}, ident="computed"),
    case("Add", inputs=["x", "expanded"], shape=(2, 3, 4), ident="Expand-batch",
         constants={**CHAIN, "rest": i64(3, 4), "token": weights(1, 3, 4)},
         before=(*SHAPE_CHAIN, helper.make_node("Expand", ["token", "target"], ["expanded"]))),
    case("Tile", constants={"r": i64(1, 2, 1, 3)}),
    case("DepthToSpace", shape=(2, 8, 3, 4), attributes={"blocksize": 2}, ident="DCR"),
    case("DepthToSpace", shape=(2, 8, 3, 4), attributes={"blocksize": 2, "mode": "CRD"},
         ident="CRD"),
]


@pytest.mark.parametrize(("model", "shape", "channels_first"), CASES)
def test_op_equals_onnxruntime(model, shape, channels_first):
    inputs = RNG.normal(size=shape).astype(np.float32)
    theirs = onnxruntime_outputs(model, inputs)
    ours, _ = translated_outputs(model, inputs, channels_first)
    for mine, reference in zip(ours, theirs, strict=True):
        assert_close(mine, reference)


def test_channels_last_4d_tensors_stay_in_file_order():
    """A 4-D input the file gives channels-last (not an NCHW image) keeps its order."""
    model = graph_model([helper.make_node("Softmax", ["x"], ["y"], axis=-1)], (2, 6, 5, 3))
    inputs = RNG.normal(size=(2, 6, 5, 3)).astype(np.float32)
    ours, translation = translated_outputs(model, inputs, channels_first=False)
    assert translation.layouts == ("plain",)
    assert_close(ours[0], onnxruntime_outputs(model, inputs)[0])
