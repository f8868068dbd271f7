"""Heads without a probability: a logits-only classifier is maximised and written; a headless
backbone is explained only when told what to explain."""

import json

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="module")
def logits_file(keras, tmp_path_factory):
    """conv -> GAP -> Dense(3) with no softmax."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))
    path = tmp_path_factory.mktemp("logits") / "logits.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def backbone_file(keras, tmp_path_factory):
    """A 64x64 input to a 4x4x32 feature map (stride 16), no classifier."""
    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Conv2D(8, 3, strides=4, padding="same", activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(32, 3, strides=4, padding="same")(x))
    path = tmp_path_factory.mktemp("backbone") / "backbone.keras"
    model.save(path)
    image = path.parent / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(image)
    return path


def test_maximize_class_of_a_logits_only_classifier_is_written(run_cli, logits_file, tmp_path):
    out = tmp_path / "out"
    run_cli("maximize", "-m", logits_file, "--class", "1", "--steps", "3", "-o", out)
    manifest = json.loads((out / "manifest.json").read_text())
    records = [record for record in manifest["outputs"] if record.get("target") == 1]
    assert records and all(record["probability"] is None for record in records)
    assert all((out / record["file"]).is_file() for record in records)
    assert (out / "maximize-classes-grid.png").is_file()


def test_headless_backbone_needs_a_class_or_a_task(run_cli, backbone_file, tmp_path):
    image = backbone_file.parent / "photo.png"
    refused = run_cli("cam", "-m", backbone_file, image, "-o", tmp_path / "a", expect=2)
    message = refused.output.strip().splitlines()[-1]
    assert "headless backbone" in message and "--class" in message and "Unexpected" not in message
    run_cli("cam", "-m", backbone_file, image, "--class", "5", "-o", tmp_path / "b")
    run_cli("cam", "-m", backbone_file, image, "--task", "segment", "-o", tmp_path / "c")
