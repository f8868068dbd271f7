"""A channels-first ONNX classifier with free height and width keeps each image's aspect
ratio: its decision depends on it (stripes' slope), and a square resize flips it."""

import numpy as np
import pytest
from onnx_graphs import graph_model
from PIL import Image


@pytest.fixture(scope="module")
def slope_onnx(tmp_path_factory):
    """Conv (|dy|, |dx| Sobel, ReLU) -> GlobalAveragePool -> Gemm -> Softmax, input
    (N, 3, H, W): class 0 (flat) when vertical gradients dominate, else 1 (steep)."""
    import onnx
    from onnx import helper

    sobel = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], "float32") / 3
    kernels = np.stack([sobel, -sobel, sobel.T, -sobel.T], 0)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "d", "b"], ["l"]),
             helper.make_node("Softmax", ["l"], ["y"])]
    constants = {"w": np.repeat(kernels[:, None], 3, 1),
                 "d": np.array([[1, 0], [1, 0], [0, 1], [0, 1]], "float32") / 10,
                 "b": np.zeros(2, "float32")}
    path = tmp_path_factory.mktemp("onnx") / "slope.onnx"
    onnx.save(graph_model(nodes, ["N", 3, "H", "W"], constants), path)
    return path


@pytest.mark.parametrize(("size", "classes", "shapes"), [
    (None, (0, 1), ((56, 224), (224, 56))),
    ("native", (0, 1), ((60, 240), (240, 60))),
    (224, (1, 0), ((224, 224), (224, 224))),  # the old square resize: both wrong
])
def test_onnx_export_keeps_the_aspect_ratio(slope_onnx, stripes, tmp_path, size, classes,
                                            shapes):
    from cnnviz_cli import cam

    Image.fromarray(stripes((60, 240), 25)).save(tmp_path / "a_wide_flat.png")
    Image.fromarray(stripes((240, 60), 65)).save(tmp_path / "b_tall_steep.png")
    result = cam(slope_onnx, tmp_path, size=size, methods=["gradcam"])
    assert tuple(item.record["class"] for item in result.items) == classes
    assert tuple(item.image.resized.shape[:2] for item in result.items) == shapes
