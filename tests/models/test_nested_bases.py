"""keras.applications bases nested in a transfer-learning classifier work with every command.

MobileNetV3Small and EfficientNetB0 hold operations written as code (`x + 3`); loaded from a
file, their names are taken again by the operations a replay creates (`add`), and the extractor
must still build. The model is loaded once and every API call (what each command runs) reuses it.
"""

import numpy as np
import pytest

SIDE = 64  # the smallest side whose last map is larger than 1x1
FAST = {"cam": {"methods": ["gradcam", "faster-scorecam", "occlusion", "lrp"], "max_n": 2,
                "patch": 32, "stride": 32},  # one method per way of reaching the model
        "activations": {}, "reconstruct": {"method": "deconvnet"},
        "dream": {"steps": 1, "octaves": 1}}


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


@pytest.mark.slow
@pytest.mark.parametrize(("family", "style"), [("MobileNetV3Small", "functional"),
                                               ("EfficientNetB0", "sequential")])
def test_every_command_runs_on_a_nested_base(keras, tmp_path, family, style):
    import cnnviz_cli as api

    path = tmp_path / "model.keras"
    _transfer_model(keras, family, style).save(path)  # loaded back: names as in a user's file
    model = api.load_model(path)
    image = np.random.default_rng(0).integers(0, 255, (48, 80, 3), np.uint8)
    for command, options in FAST.items():
        getattr(api, command)(model, [image], out=tmp_path / command, **options)
    api.reconstruct(model, [image], method="inversion", steps=2, out=tmp_path / "inversion")
    api.filters(model, out=tmp_path / "filters")
    api.maximize(model, filters=[0], steps=2, out=tmp_path / "maximize")
    result = api.maximize(model, classes=[1], steps=2, out=tmp_path / "class")
    assert (tmp_path / "class" / "manifest.json").is_file() and len(result.images) == 1
