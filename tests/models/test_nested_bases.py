"""keras.applications bases nested in a transfer-learning classifier work with every command.

MobileNetV3Small and EfficientNetB0 hold operations written as code (`x + 3`); loaded from a
file, their names are taken again by the operations a replay creates (`add`), and the extractor
must still build. The model is loaded once and every API call (what each command runs) reuses it.
"""

import numpy as np
import pytest

SIDE = 64  # the smallest side whose last map is larger than 1x1
CAM = {"methods": ["gradcam", "occlusion"], "patch": 32, "stride": 32}  # extractor; forward


def _transfer_model(keras, family: str, style: str):
    base = getattr(keras.applications, family)(include_top=False, weights=None,
                                               input_shape=(SIDE, SIDE, 3))
    head = [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")]
    if style == "sequential":
        return keras.Sequential([keras.Input((SIDE, SIDE, 3)), base, *head])
    inputs = keras.Input((SIDE, SIDE, 3))
    x = base(inputs)
    for layer in head:
        x = layer(x)
    return keras.Model(inputs, x)


def _cam_layer(api, model) -> str:
    """The layer cam picks: the base's last feature map, addressed as base/layer. Projections
    go through it alone (each layer's projection is a compiled pass of its own to trace)."""
    return next(layer["name"] for layer in api.layers(model).layers if "cam" in layer["auto"])


@pytest.mark.slow
def test_every_command_runs_on_a_nested_mobilenet_v3(keras, tmp_path):
    import cnnviz_cli as api

    path = tmp_path / "model.keras"
    _transfer_model(keras, "MobileNetV3Small", "functional").save(path)  # names as in a file
    model = api.load_model(path)
    image = np.random.default_rng(0).integers(0, 255, (48, 80, 3), np.uint8)
    api.cam(model, [image], out=tmp_path / "cam", **CAM)
    api.activations(model, [image], out=tmp_path / "activations")
    api.reconstruct(model, [image], method="deconvnet", layers=[_cam_layer(api, model)],
                    out=tmp_path / "reconstruct")
    api.dream(model, [image], steps=1, octaves=1, out=tmp_path / "dream")
    api.filters(model, out=tmp_path / "filters")
    result = api.maximize(model, classes=[1], steps=2, out=tmp_path / "class")
    assert (tmp_path / "class" / "manifest.json").is_file() and len(result.images) == 1


@pytest.mark.slow
def test_cam_and_reconstruct_run_on_an_efficientnet_nested_in_a_sequential(keras, tmp_path):
    import cnnviz_cli as api

    path = tmp_path / "model.keras"
    _transfer_model(keras, "EfficientNetB0", "sequential").save(path)
    model = api.load_model(path)
    image = np.random.default_rng(0).integers(0, 255, (48, 80, 3), np.uint8)
    api.cam(model, [image], out=tmp_path / "cam", **CAM)
    assert {path.name.split("-")[1] for path in (tmp_path / "cam").rglob("cam-*.png")} >= {
        "gradcam", "occlusion"}
    layer = _cam_layer(api, model)
    assert "/" in layer  # inside the nested base
    api.reconstruct(model, [image], method="deconvnet", layers=[layer],
                    out=tmp_path / "reconstruct")
