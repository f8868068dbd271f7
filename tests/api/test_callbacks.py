"""VisualizeCallback during fit(), TensorBoard summaries, and --checkpoint series of cam."""

import json

import numpy as np
import pytest
from PIL import Image

from cnnviz_cli.errors import CnnvizError

EPOCHS = 2
SIDE = 8


def _tiny_model(keras):
    inputs = keras.Input((SIDE, SIDE, 3))
    x = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(2, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs)


def _data():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (48, SIDE, SIDE, 3)).astype("float32")
    labels = (images[..., 0].mean(axis=(1, 2)) > 0.5).astype("int32")
    followed = rng.integers(0, 256, (2, SIDE, SIDE, 3), dtype=np.uint8)
    return images, labels, followed


def _fit(keras, initial, callbacks):
    keras.utils.set_random_seed(0)
    model = _tiny_model(keras)
    model.set_weights(initial)
    model.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    images, labels, _ = _data()
    model.fit(images, labels, epochs=EPOCHS, batch_size=8, verbose=0, callbacks=callbacks)
    return model


@pytest.fixture(scope="module")
def trained(keras, tmp_path_factory):
    """The tiny model trained with the callback (and once more without it)."""
    import cnnviz_cli

    folder = tmp_path_factory.mktemp("callback")
    keras.utils.set_random_seed(1)
    initial = _tiny_model(keras).get_weights()
    _, _, followed = _data()
    callback = cnnviz_cli.VisualizeCallback(
        list(followed), techniques=("cam", "activations", "filters", "maximize"),
        out=folder / "viz", log_dir=folder / "logs", methods=["gradcam", "layercam"],
        layer="conv", steps=4, filters=[0, 1])
    with_callback = _fit(keras, initial, [callback])
    without = _fit(keras, initial, [])
    return callback, with_callback, without, folder


@pytest.mark.slow  # over ~3 s
def test_per_epoch_outputs_and_evolution(trained):
    callback, _, _, folder = trained
    out = folder / "viz"
    for step in range(EPOCHS + 1):
        manifest = json.loads((out / f"epoch-{step:03d}" / "manifest.json").read_text())
        assert manifest["callback"]["epoch"] == step
        assert {run["command"] for run in manifest["runs"]} == {
            "cam", "activations", "filters", "maximize"}
        assert (out / f"epoch-{step:03d}" / "cam" / "image-0").is_dir()
    manifest = json.loads((out / "evolution" / "cam" / "manifest.json").read_text())
    strips = {r["file"]: r for r in manifest["outputs"] if r["kind"] == "strip"}
    assert set(strips) == {f"image-{i}/cam-{m}-epochs.png" for i in (0, 1)
                           for m in ("gradcam", "layercam")}
    record = strips["image-0/cam-gradcam-epochs.png"]
    assert record["states"] == [f"epoch {step}" for step in range(EPOCHS + 1)]
    gif = Image.open(out / "evolution" / "filters" / "filters-conv-epochs.gif")
    assert gif.n_frames == EPOCHS + 1
    strip = Image.open(out / "evolution" / "cam" / "image-0" / "cam-gradcam-epochs.png")
    assert strip.height > (EPOCHS + 1) * 96  # one enlarged row per step
    assert (out / "index.html").is_file()
    assert len(callback.seconds) == EPOCHS + 1 and all(s > 0 for s in callback.seconds)
    assert trained[1].history.history["cnnviz_seconds"] == callback.seconds[1:]


def test_training_is_unaffected(trained):
    _, with_callback, without, _ = trained
    for a, b in zip(with_callback.get_weights(), without.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-7)


def test_compiled_functions_traced_once(trained):
    callback = trained[0]
    compiled = callback.resolved.compiled
    assert sorted(key[0] for key in compiled) == ["activations", "cam", "maximize"]
    cam = next(v for k, v in compiled.items() if k[0] == "cam")
    extractor = next(v for k, v in compiled.items() if k[0] == "activations")
    assert cam.core.experimental_get_tracing_count() == 1
    assert extractor._forward.experimental_get_tracing_count() == 1


def _events(folder):
    import tensorflow as tf

    images, scalars = {}, {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                array = tf.make_ndarray(value.tensor)
                if value.metadata.plugin_data.plugin_name == "images":
                    width, height = int(array[0]), int(array[1])
                    picture = np.asarray(Image.open(__import__("io").BytesIO(array[2])))
                    assert picture.shape[:2] == (height, width)
                    images.setdefault(value.tag, {})[event.step] = picture
                else:
                    scalars.setdefault(value.tag, {})[event.step] = float(array)
    return images, scalars


def test_tensorboard_summaries(trained, keras):
    callback, model, _, folder = trained
    images, scalars = _events(folder / "logs")
    steps = list(range(EPOCHS + 1))
    for tag in ("cnnviz/cam/image-0/gradcam", "cnnviz/cam/image-1/layercam",
                "cnnviz/activations/image-0/conv", "cnnviz/filters/conv",
                "cnnviz/maximize/conv"):
        assert sorted(images[tag]) == steps, tag
    # the overlay logged at the last step is the one written into its epoch folder
    written = sorted((folder / "viz" / f"epoch-{EPOCHS:03d}" / "cam" / "image-0").glob(
        "cam-gradcam-*[!p].png"))
    np.testing.assert_array_equal(images["cnnviz/cam/image-0/gradcam"][EPOCHS],
                                  np.asarray(Image.open(written[0]).convert("RGB")))
    # the explained score at the last step is the trained model's pre-softmax logit
    _, _, followed = _data()
    features = keras.Model(model.inputs, model.get_layer("gap").output)(
        followed.astype("float32")).numpy()
    kernel, bias = model.get_layer("predictions").get_weights()
    logits = features @ kernel + bias
    score = scalars["cnnviz/cam/image-0/gradcam/score"]
    assert sorted(score) == steps
    np.testing.assert_allclose(score[EPOCHS], logits[0].max(), rtol=1e-4, atol=1e-5)
    assert sorted(scalars["cnnviz/seconds"]) == steps
    assert sorted(scalars["cnnviz/filters/conv/mean_norm"]) == steps


def test_unwritable_log_dir_fails_before_training(keras, tmp_path):
    import cnnviz_cli

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    epochs = []
    counter = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: epochs.append(1))
    callback = cnnviz_cli.VisualizeCallback(np.zeros((1, SIDE, SIDE, 3), np.uint8),
                                            log_dir=blocker / "logs")
    keras.utils.set_random_seed(0)
    with pytest.raises(CnnvizError, match="Cannot write TensorBoard summaries to .*file/logs"):
        _fit(keras, _tiny_model(keras).get_weights(), [callback, counter])
    assert epochs == []


def test_unknown_options_and_techniques_fail_at_once():
    from cnnviz_cli.callbacks import VisualizeCallback

    with pytest.raises(CnnvizError, match="Unknown technique.*dreams"):
        VisualizeCallback([], techniques=("cam", "dreams"))
    with pytest.raises(CnnvizError, match="takes the option 'steps'"):
        VisualizeCallback([], techniques=("cam",), steps=3)


# --- cam --checkpoint ---------------------------------------------------------------------------

PATCH = 4  # the image holds a red patch top left and a green patch bottom right


def _patch_model(keras, evidence_channel: int):
    """1x1 conv copying red and green into two feature maps; class 0's score is the mean of
    feature map `evidence_channel`, so GradCAM of class 0 lights that colour's patch."""
    inputs = keras.Input((SIDE, SIDE, 3))
    x = keras.layers.Conv2D(2, 1, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(2, name="predictions")(x)
    model = keras.Model(inputs, outputs)
    kernel = np.zeros((1, 1, 3, 2), "float32")
    kernel[0, 0, 0, 0] = kernel[0, 0, 1, 1] = 1.0
    dense = np.zeros((2, 2), "float32")
    dense[evidence_channel, 0] = 1.0
    dense[1 - evidence_channel, 1] = 1.0
    model.set_weights([kernel, np.zeros(2, "float32"), dense, np.zeros(2, "float32")])
    return model


@pytest.fixture(scope="module")
def patch_files(keras, tmp_path_factory):
    folder = tmp_path_factory.mktemp("patches")
    for name, channel in (("a", 0), ("b", 1)):
        _patch_model(keras, channel).save(folder / f"{name}.keras")
    image = np.zeros((SIDE, SIDE, 3), np.uint8)
    image[:PATCH, :PATCH, 0] = 255
    image[PATCH:, PATCH:, 1] = 255
    Image.fromarray(image).save(folder / "patches.png")
    other = keras.Sequential([keras.Input((SIDE, SIDE, 3)),
                              keras.layers.Conv2D(5, 3, name="conv"),
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(2)])
    other.save(folder / "other.keras")
    other.save_weights(folder / "other.weights.h5")
    return folder


def test_cam_checkpoints_rows_peak_on_their_patch(run_cli, patch_files, tmp_path):
    out = tmp_path / "out"
    run_cli("-q", "cam", patch_files / "patches.png", "-m", patch_files / "a.keras",
            "--preprocess", "unit", "-l", "conv", "--class", "0",
            "--checkpoint", patch_files / "a.keras", "--checkpoint", patch_files / "b.keras",
            "--tensorboard", tmp_path / "logs", "-o", out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"]["checkpoints"] == [str(patch_files / f"{n}.keras") for n in "ab"]
    (record,) = [r for r in manifest["outputs"] if r["kind"] == "strip"]
    assert record["file"] == "patches/cam-gradcam-checkpoints.png"
    assert record["states"] == ["a.keras", "b.keras"]
    first, second = (np.array(state["heatmap"]["peak"]) * SIDE for state in record["records"])
    assert (first < PATCH).all() and (second >= PATCH).all()
    assert Image.open(out / "patches" / "cam-gradcam-checkpoints.gif").n_frames == 2
    images, scalars = _events(tmp_path / "logs")
    assert sorted(images["cnnviz/cam/patches/gradcam"]) == [0, 1]
    # class 0's logit is the mean red (a) and then the mean green (b): a quarter of the image
    np.testing.assert_allclose(list(scalars["cnnviz/cam/patches/gradcam/score"].values()),
                               [0.25, 0.25], rtol=1e-5)


def test_activations_and_maximize_checkpoints(run_cli, patch_files, tmp_path):
    files = [arg for n in "ab" for arg in ("--checkpoint", patch_files / f"{n}.keras")]
    model = ("-m", patch_files / "a.keras", "--preprocess", "unit")
    run_cli("-q", "activations", patch_files / "patches.png", *model, "-l", "conv", *files,
            "-o", tmp_path / "act")
    gif = Image.open(tmp_path / "act" / "patches" / "activations-conv-checkpoints.gif")
    assert gif.n_frames == 2
    run_cli("-q", "maximize", *model, "-l", "conv", "--steps", "2", *files,
            "-o", tmp_path / "max")
    manifest = json.loads((tmp_path / "max" / "manifest.json").read_text())
    (record,) = [r for r in manifest["outputs"] if r["kind"] == "strip"]
    assert record["file"] == "maximize-conv-checkpoints.png" and len(record["numbers"]) == 2


@pytest.mark.parametrize("checkpoint, message", [
    ("other.keras", "does not match the model's architecture"),
    ("other.weights.h5", "Cannot load checkpoint"),
])
def test_bad_checkpoints_fail_in_one_sentence(run_cli, patch_files, tmp_path, checkpoint,
                                              message):
    result = run_cli("-q", "cam", patch_files / "patches.png", "-m", patch_files / "a.keras",
                     "--checkpoint", patch_files / checkpoint, "-o", tmp_path / "o", expect=2)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_unwritable_tensorboard_folder_is_exit_2(run_cli, patch_files, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run_cli("-q", "filters", "-m", patch_files / "a.keras", "--tensorboard",
                     blocker / "logs", "-o", tmp_path / "o", expect=2)
    assert "Cannot write TensorBoard summaries" in result.output


def test_filters_checkpoints_and_reconstruct_in_tensorboard(run_cli, keras, patch_files,
                                                            tmp_path):
    model = keras.models.load_model(patch_files / "a.keras")
    kernel, *rest = model.get_weights()
    model.set_weights([kernel * 3.0, *rest])
    scaled = tmp_path / "scaled.weights.h5"
    model.save_weights(scaled)
    logs = tmp_path / "logs"
    run_cli("-q", "filters", "-m", patch_files / "a.keras", "--checkpoint",
            patch_files / "a.keras", "--checkpoint", scaled, "--tensorboard", logs,
            "-o", tmp_path / "f")
    norms = [np.linalg.norm(k.reshape(-1, 2), axis=0).mean() for k in (kernel, kernel * 3)]
    images, scalars = _events(logs)
    assert sorted(images["cnnviz/filters/conv"]) == [0, 1]
    np.testing.assert_allclose([scalars["cnnviz/filters/conv/mean_norm"][s] for s in (0, 1)],
                               norms, rtol=1e-5)
    run_cli("-q", "reconstruct", patch_files / "patches.png", "-m", patch_files / "a.keras",
            "--preprocess", "unit", "-l", "conv", "--method", "guided", "--tensorboard",
            tmp_path / "logs2", "-o", tmp_path / "r")
    images, _ = _events(tmp_path / "logs2")
    (tag,) = images
    assert tag == "cnnviz/reconstruct/patches/conv" and list(images[tag]) == [0]


@pytest.mark.parametrize("option", ["--metrics", "--save-npy", "--skip-existing"])
def test_options_a_checkpoint_series_drops_are_refused(run_cli, patch_files, tmp_path, option):
    result = run_cli("-q", "cam", patch_files / "patches.png", "-m", patch_files / "a.keras",
                     "--checkpoint", patch_files / "b.keras", option, "-o", tmp_path / "o",
                     expect=2)
    assert f"{option} cannot go with --checkpoint" in result.output
    assert not (tmp_path / "o").exists()
