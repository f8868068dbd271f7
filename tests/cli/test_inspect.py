"""`cnnviz layers` and `cnnviz models`: full names whatever the width, JSON, conflicting models."""

import json

import pytest

LONG = "a_layer_name_long_enough_to_overflow_a_narrow_terminal_column_" * 2


@pytest.fixture(scope="module")
def long_names_file(keras, tmp_path_factory):
    """A nested model whose inner layer has a 124-character name, saved as .keras."""
    inner_in = keras.Input((8, 8, 3))
    inner = keras.Model(inner_in, keras.layers.Conv2D(2, 3, name=LONG)(inner_in), name="backbone")
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.GlobalAveragePooling2D(name="gap")(inner(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))
    path = tmp_path_factory.mktemp("long") / "long.keras"
    model.save(path)
    return path, model


@pytest.mark.parametrize("columns", ["40", "80"])
def test_layer_names_are_never_cut(run_cli, long_names_file, monkeypatch, columns):
    path, model = long_names_file
    monkeypatch.setenv("COLUMNS", columns)
    output = run_cli("layers", "-m", path).output
    expected = ["backbone", f"backbone/{LONG}", "gap", "logits"]
    assert [layer.name for layer in model.layers[1:]] == ["backbone", "gap", "logits"]
    cells = [cell.strip() for line in output.splitlines() for cell in line.split("│")]
    assert all(name in cells for name in expected), output
    assert "…" not in output and "Conv2D" in output  # the type column


def test_layers_json_lists_every_path(run_cli, nested_model, tmp_path):
    path = tmp_path / "nested.keras"
    nested_model.save(path)
    data = json.loads(run_cli("layers", str(path), "--json").output)
    names = [row["name"] for row in data["layers"]]
    backbone = nested_model.get_layer("backbone")
    assert names == ["backbone", *(f"backbone/{layer.name}" for layer in backbone.layers[1:]),
                     "gap", "logits", "softmax"]
    top = sum(row["params"] for row in data["layers"] if "/" not in row["name"])
    assert top == nested_model.count_params()
    conv2 = data["layers"][names.index("backbone/conv2")]
    assert (conv2["output_shape"], conv2["feature_map"]) == ([None, 8, 8, 6], True)
    assert data["model"]["source"] == str(path)


def test_layers_refuses_a_model_given_twice(run_cli, long_names_file):
    path, _ = long_names_file
    for args in (("layers", "demo", "-m", path), ("layers", path, "--model", "demo")):
        lines = run_cli(*args, expect=2).output.strip().splitlines()
        assert len(lines) == 1 and "not both" in lines[0] and lines[0].endswith("."), lines
    assert "block1_conv1" in run_cli("layers", "demo").output
    assert "block1_conv1" in run_cli("layers", "-m", "demo").output
