"""Shared fixtures: small models with chosen weights, images on disk, a CLI runner; the system
tier's marker."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

SYSTEM = Path(__file__).parent / "system"


def pytest_configure(config):
    """Each worker (and each process its tests start) gets its share of the cores for
    TensorFlow's thread pools, set before anything imports TensorFlow: pools of one thread per
    core in every worker spin against each other (9 % more CPU time over the suite)."""
    workers = getattr(config.option, "numprocesses", None) or 1  # pytest-xdist's -n
    for pool in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ.setdefault(pool, str(max(1, (os.cpu_count() or 1) // workers)))


def pytest_collection_modifyitems(items):
    """Tests under tests/system (subprocesses, Slurm, a browser, the notebook, the docs' command
    lines) are the `system` tier: `make test-fast` leaves them out. The system and slow tests
    run first, so that two workers end on short tests instead of one waiting for the other."""
    for item in items:
        if SYSTEM in item.path.parents:
            item.add_marker(pytest.mark.system)
    items.sort(key=lambda item: item.get_closest_marker("system") is None
               and item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def keras():
    import keras

    return keras


@pytest.fixture(scope="session")
def forks(tmp_path_factory):
    """Real `cnnviz` processes, forked from one that imported TensorFlow (see forks.py)."""
    from forks import Forks

    with Forks(tmp_path_factory.mktemp("forks")) as server:
        yield server


@pytest.fixture
def run_cli():
    """Invoke `cnnviz ARGS...` in-process; returns the click Result."""
    from cnnviz_cli.cli import cli

    def invoke(*args: str, expect: int | None = 0):
        result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
        if expect is not None:
            assert result.exit_code == expect, result.output
        return result

    return invoke


@pytest.fixture(scope="session")
def tiny_conv_model(keras):
    """input 8x8x3 -> conv 'conv' (2 filters 3x3, ReLU) -> GAP -> Dense(3, softmax)."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs, name="tiny")
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    return model


@pytest.fixture(scope="session")
def flat_model(keras):
    """input 6x6x3 -> conv 'conv' (4 filters 3x3, ReLU) -> Flatten -> Dense(3, softmax).

    The dense layer sees every position, so gradients vary over space.
    """
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(3)
    model.set_weights([0.4 * rng.normal(size=w.shape).astype("float32") for w in model.weights])
    return model


@pytest.fixture(scope="session")
def nested_model(keras):
    """The transfer-learning shape: a functional backbone inside a Sequential head."""
    base_in = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(base_in)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv2")(x)
    backbone = keras.Model(base_in, x, name="backbone")
    model = keras.Sequential(
        [keras.Input((16, 16, 3)), backbone, keras.layers.GlobalAveragePooling2D(name="gap"),
         keras.layers.Dense(5, name="logits"), keras.layers.Softmax(name="softmax")],
        name="classifier",
    )
    rng = np.random.default_rng(1)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    return model


@pytest.fixture(scope="session")
def demo_resolved():
    from cnnviz_cli.models.resolve import ModelRequest, resolve_model

    return resolve_model(ModelRequest())


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory):
    """Three small generated shape images on disk (two classes and a two-shape scene)."""
    from cnnviz_cli.demo.shapes import draw_scene

    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(7)
    for name, classes in (("circle", [0]), ("star", [3]), ("pair", [1, 5])):
        image, _ = draw_scene(rng, 96, classes)
        Image.fromarray(image).save(folder / f"{name}.png")
    return folder


@pytest.fixture(scope="session")
def small_model_file(keras, tmp_path_factory):
    """A small fully convolutional classifier (conv 'conv' -> GAP -> Dense(3)) as a .keras file:
    run commands on it with `-m FILE --preprocess unit -l conv`."""
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    path = tmp_path_factory.mktemp("small_model") / "small.keras"
    keras.Model(inputs, outputs).save(path)
    return path


@pytest.fixture(scope="session")
def vgg_style(keras):
    """A small VGG-style network for 64x64 inputs with its initial (weights=None) random weights:
    blocks of two convolutions `blockB_convC` and a pool, GAP, Dense(10, softmax)."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((64, 64, 3))
    x = inputs
    for block, filters in enumerate((16, 32, 32), start=1):
        for conv in (1, 2):
            x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu",
                                    name=f"block{block}_conv{conv}")(x)
        x = keras.layers.MaxPooling2D(name=f"block{block}_pool")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))


@pytest.fixture(scope="session")
def stripes():
    """`stripes((height, width), degrees)`: smooth uint8 RGB stripes at `degrees` from the
    horizontal (period 10 px), whose orientation a square resize of a non-square image
    changes."""

    def draw(shape: tuple[int, int], degrees: float, period: float = 10.0) -> np.ndarray:
        rows, columns = np.mgrid[0:shape[0], 0:shape[1]].astype("float32")
        angle = np.deg2rad(degrees)
        normal = rows * np.cos(angle) - columns * np.sin(angle)
        grey = 127.5 + 127.5 * np.sin(2 * np.pi * normal / period)
        return np.repeat(grey[..., None], 3, -1).round().astype(np.uint8)

    return draw
