"""A model loaded again in the same process is the one loaded before, with its compiled
functions, until its file is written again; what only feeds it (preprocessing, labels) is the
call's own."""

import os

import numpy as np


def test_the_same_file_is_loaded_once_until_it_is_written_again(keras, tmp_path):
    from cnnviz_cli.models.resolve import ModelRequest, resolve_model

    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(
        keras.layers.Conv2D(3, 3, name="conv")(inputs)))
    model, path = keras.Model(inputs, outputs), tmp_path / "net.keras"
    model.save(path)
    first = resolve_model(ModelRequest(str(path)))
    again = resolve_model(ModelRequest(str(path), preprocess="unit", labels=None))
    assert again.model is first.model and again.compiled is first.compiled
    assert (first.preprocess_name, again.preprocess_name) == ("none", "unit")

    model.get_layer("conv").set_weights([w + 1 for w in model.get_layer("conv").get_weights()])
    model.save(path)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # coarse clocks
    written = resolve_model(ModelRequest(str(path)))
    assert written.model is not first.model and written.compiled is not first.compiled
    np.testing.assert_array_equal(written.model.get_layer("conv").get_weights()[0],
                                  model.get_layer("conv").get_weights()[0])


def test_the_least_recently_used_model_is_dropped():
    from cnnviz_cli.models.memo import Loaded

    loaded, calls = Loaded(kept=2), []

    def load(name):
        return lambda: calls.append(name) or object()

    kept = {name: loaded.get(name, load(name)) for name in ("a", "b")}
    assert loaded.get("a", load("a")) is kept["a"]  # "a" used last: "b" goes first
    loaded.get("c", load("c"))
    assert loaded.get("a", load("a")) is kept["a"]
    assert loaded.get("b", load("b")) is not kept["b"]
    assert calls == ["a", "b", "c", "b"]
    assert loaded.get(None, load("x")) is not loaded.get(None, load("x"))  # never kept


def test_custom_classes_given_as_objects_load_each_time(keras, tmp_path):
    from cnnviz_cli.models.resolve import ModelRequest, resolve_model

    class Doubled(keras.layers.Layer):
        def call(self, x):
            return 2 * x

    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(
        Doubled(name="doubled")(keras.layers.Conv2D(3, 3)(inputs))))
    path = tmp_path / "custom.keras"
    keras.Model(inputs, outputs).save(path)
    request = ModelRequest(str(path), custom_objects={"Doubled": Doubled})
    assert resolve_model(request).model is not resolve_model(request).model


def test_a_copy_of_the_model_compiles_its_own_functions(keras, monkeypatch):
    """`load_model` swaps in another model object for mixed precision: that one must not reuse
    what was traced for the float32 model."""
    import cnnviz_cli.device
    from cnnviz_cli import api

    loaded = api.load_model("demo")
    assert api.load_model("demo").compiled is loaded.compiled
    monkeypatch.setattr(cnnviz_cli.device, "with_precision",
                        lambda model, precision: keras.models.clone_model(model))
    copy = api.load_model("demo")
    assert copy.model is not loaded.model and copy.compiled is not loaded.compiled
