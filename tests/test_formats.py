"""Every model file a user has: custom layers (--custom-objects), SavedModel, TFLite and ONNX."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cnnviz_cli.errors import CnnvizError

CUSTOM_LAYER = textwrap.dedent('''
    """A custom layer, registered; importing this file leaves a marker beside it."""
    from pathlib import Path

    import keras

    Path(__file__).with_suffix(".imported").write_text("yes")


    @keras.saving.register_keras_serializable(package="cnnviz_test")
    class Scale(keras.layers.Layer):
        def __init__(self, factor=2.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, inputs):
            return inputs * self.factor

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}
''')

SAVE_CUSTOM = textwrap.dedent('''
    import sys
    from pathlib import Path

    import keras
    import numpy as np

    folder = Path(sys.argv[1])
    sys.path.insert(0, str(folder))
    from scale_layer import Scale

    inputs = keras.Input((8, 8, 3))
    x = Scale(3.0, name="scale")(inputs)
    x = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))
    model.save(folder / "custom.keras")
    model.save(folder / "custom.h5")
    probe = np.linspace(0, 1, 8 * 8 * 3, dtype="float32").reshape(1, 8, 8, 3)
    np.save(folder / "expected.npy", model.predict(probe, verbose=0))
    (folder / "scale_layer.imported").unlink()
''')


@pytest.fixture(scope="module")
def custom_files(tmp_path_factory):
    """A custom-layer model saved as .keras and .h5 by another process, so this one has never
    imported (or registered) the layer; its module leaves a marker when imported."""
    folder = tmp_path_factory.mktemp("custom")
    (folder / "scale_layer.py").write_text(CUSTOM_LAYER)
    (folder / "raises.py").write_text("raise RuntimeError('no licence server')\n")
    subprocess.run([sys.executable, "-c", SAVE_CUSTOM, str(folder)], check=True,
                   capture_output=True)
    return folder


def one_sentence(output: str, *parts: str) -> None:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in output, output
    for part in parts:
        assert part in lines[0], lines[0]


# The refusals run first: once the layer is imported, Keras knows it for the whole process.
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_custom_layer_without_the_flag_is_named_and_its_code_does_not_run(
        run_cli, custom_files, suffix):
    result = run_cli("layers", custom_files / f"custom{suffix}", expect=2)
    one_sentence(result.output, "custom class(es) cnnviz_test>Scale", "--custom-objects")
    assert not (custom_files / "scale_layer.imported").exists()


@pytest.mark.parametrize(("name", "message"), [
    ("missing.py", "--custom-objects {folder}/missing.py: no such Python file."),
    ("raises.py", "--custom-objects {folder}/raises.py raised RuntimeError while importing: "
                  "no licence server."),
    ("no_such_module_here", "--custom-objects no_such_module_here is neither a Python file "
                            "nor a module"),
])
def test_bad_custom_objects_are_one_sentence_and_exit_2(run_cli, custom_files, name, message):
    spec = name if name.endswith("module_here") else custom_files / name
    result = run_cli("layers", custom_files / "custom.keras", "--custom-objects", spec,
                     expect=2)
    one_sentence(result.output, message.format(folder=custom_files))


def test_custom_objects_apply_to_model_files_only(run_cli, custom_files):
    result = run_cli("layers", "demo", "--custom-objects", custom_files / "scale_layer.py",
                     expect=2)
    one_sentence(result.output, "--custom-objects applies to model files only")


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_custom_layer_loads_with_the_flag(run_cli, custom_files, suffix):
    from cnnviz_cli import api

    result = run_cli("layers", custom_files / f"custom{suffix}", "--custom-objects",
                     custom_files / "scale_layer.py", "--json")
    assert (custom_files / "scale_layer.imported").exists()
    layers = {row["name"]: row["type"] for row in json.loads(result.output)["layers"]}
    assert layers["scale"] == "Scale"
    resolved = api.load_model(custom_files / f"custom{suffix}",
                              custom_objects=[custom_files / "scale_layer.py"])
    probe = np.linspace(0, 1, 8 * 8 * 3, dtype="float32").reshape(1, 8, 8, 3)
    np.testing.assert_allclose(resolved.model.predict(probe, verbose=0),
                               np.load(custom_files / "expected.npy"), rtol=1e-5, atol=1e-6)


def test_a_module_name_is_imported_and_its_classes_offered(custom_files, monkeypatch):
    from cnnviz_cli.models.custom import custom_objects

    monkeypatch.syspath_prepend(str(custom_files))
    objects = custom_objects(["scale_layer"])
    assert objects["Scale"] is objects["cnnviz_test>Scale"]
    assert objects["Scale"].__module__ == "scale_layer"


def test_custom_objects_of_a_loaded_model_are_refused(demo_resolved):
    from cnnviz_cli import api

    with pytest.raises(CnnvizError, match="apply when a model is loaded"):
        api.load_model(demo_resolved, custom_objects=["x.py"])
