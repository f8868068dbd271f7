"""Gradient attributions against closed-form NumPy gradients, IG completeness, and the CLI."""

import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from cnnviz_cli.techniques.cam import (
    IG_BASELINES,
    CamExplainer,
    CamOptions,
    Targets,
    gaussian_blur,
)
from cnnviz_cli.techniques.methods.attributions import integrated_gradients, smoothgrad_noise

SIZE, CHANNELS, FILTERS, CLASSES = 5, 3, 4, 3


@pytest.fixture(scope="module")
def smooth_model(keras):
    """input 5x5x3 -> 1x1 conv 'conv' (4 filters, tanh) -> Flatten -> Dense(3, softmax).

    The logit is a smooth function of the input with a closed-form gradient (`reference`).
    """
    inputs = keras.Input((SIZE, SIZE, CHANNELS))
    x = keras.layers.Conv2D(FILTERS, 1, activation="tanh", name="conv")(inputs)
    x = keras.layers.Flatten(name="flat")(x)
    outputs = keras.layers.Dense(CLASSES, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    model.set_weights([0.5 * rng.normal(size=w.shape).astype("float32") for w in model.weights])
    return model


def reference(model, x, classes):
    """Logits and d logit[class] / d x of the smooth model, in float64."""
    kernel, bias, weights, dense_bias = (np.float64(w) for w in model.get_weights())
    kernel = kernel[0, 0]  # (channels, filters)
    activations = np.tanh(np.einsum("nhwc,ck->nhwk", np.float64(x), kernel) + bias)
    logits = activations.reshape(len(x), -1) @ weights + dense_bias
    upstream = weights[:, classes].T.reshape(activations.shape) * (1 - activations**2)
    return logits, np.einsum("nhwk,ck->nhwc", upstream, kernel)


def explain(model, x, classes, methods, **options):
    explainer = CamExplainer(model, "conv", x.shape[1:])
    return explainer(x, Targets(classes), methods, CamOptions(**options))


def test_saliency_and_gradient_input_match_closed_form(smooth_model):
    x = np.random.default_rng(1).normal(size=(2, SIZE, SIZE, CHANNELS)).astype("float32")
    result = explain(smooth_model, x, (2, 0), ["saliency", "gradient-input"], batch_size=3)
    items = x[result.image_indices]
    logits, gradients = reference(smooth_model, items, result.classes)
    np.testing.assert_allclose(result.scores, logits[np.arange(4), result.classes], rtol=1e-5)
    expected = {"saliency": np.abs(gradients).max(axis=-1),
                "gradient-input": np.maximum((items * gradients).sum(axis=-1), 0)}
    for name, maps in expected.items():
        assert maps.shape == (4, SIZE, SIZE) and maps.max() > 0
        np.testing.assert_allclose(result.maps[name], maps, atol=1e-5 * maps.max(), err_msg=name)


def test_smoothgrad_is_the_mean_gradient_at_the_seeded_noise_draws(smooth_model):
    x = np.random.default_rng(2).normal(size=(2, SIZE, SIZE, CHANNELS)).astype("float32")
    samples, sigma, seed = 7, 0.2, 11
    result = explain(smooth_model, x, (1,), ["smoothgrad"], samples=samples, noise=sigma,
                     seed=seed, batch_size=5)  # passes of 5 copies straddle the items
    noise = smoothgrad_noise(tf.range(samples), (SIZE, SIZE, CHANNELS), seed).numpy()
    expected = []
    for image in x:
        noisy = image + sigma * (image.max() - image.min()) * noise
        mean = reference(smooth_model, noisy, [1] * samples)[1].mean(axis=0)
        expected.append(np.abs(mean).max(axis=-1))
    expected = np.stack(expected)
    np.testing.assert_allclose(result.maps["smoothgrad"], expected, atol=1e-5 * expected.max())
    # The noise is standard normal, its copies differ, and a copy's draw is its own.
    assert abs(noise.mean()) < 0.15 and 0.85 < noise.std() < 1.15
    assert not np.allclose(noise[0], noise[1])
    single = smoothgrad_noise(tf.constant([3]), (SIZE, SIZE, CHANNELS), seed).numpy()
    np.testing.assert_array_equal(single[0], noise[3])
    other = explain(smooth_model, x, (1,), ["smoothgrad"], samples=samples, noise=sigma,
                    seed=seed + 1)
    assert not np.allclose(other.maps["smoothgrad"], expected, atol=1e-3 * expected.max())


@pytest.fixture(scope="module")
def relu_model(keras):
    """input 8x8x3 -> conv (4, 3x3, ReLU) -> conv 'conv' (5, 3x3, ReLU) -> GAP -> Dense(3)."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, keras.layers.Dense(CLASSES, name="logits")(x))
    rng = np.random.default_rng(3)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.weights])
    return model


def test_integrated_gradients_are_complete(relu_model):
    """Attributions sum to score(x) - score(baseline) (Sundararajan et al.'s completeness)."""
    rng = np.random.default_rng(4)
    x = rng.uniform(-1, 1, size=(3, 8, 8, 3)).astype("float32")
    explainer = CamExplainer(relu_model, "conv", (8, 8, 3))
    classes = tf.constant([0, 1, 2])
    for baseline in (np.zeros_like(x), rng.uniform(-1, 1, size=x.shape).astype("float32")):
        attributions = integrated_gradients(explainer, x, classes, baseline, 256, 100).numpy()
        logits = relu_model.predict(np.concatenate([x, baseline]), verbose=0)
        difference = logits[np.arange(3), [0, 1, 2]] - logits[np.arange(3, 6), [0, 1, 2]]
        assert np.all(np.abs(difference) > 0.5), difference  # a sum worth checking
        np.testing.assert_allclose(attributions.sum(axis=(1, 2, 3)), difference, rtol=0.01)
        # Passes of 7 copies give the same sums as one pass of all the copies.
        few = integrated_gradients(explainer, x, classes, baseline, 256, 7).numpy()
        np.testing.assert_allclose(few, attributions, atol=1e-5 * np.abs(attributions).max())


def test_integrated_gradients_map_from_each_baseline(relu_model):
    x = np.random.default_rng(5).uniform(0, 255, size=(2, 8, 8, 3)).astype("float32")
    options = {"ig_steps": 16, "seed": 3, "preprocess": lambda pixels: pixels / 255.0 - 0.5}
    inputs = options["preprocess"](x)
    explainer = CamExplainer(relu_model, "conv", (8, 8, 3))
    baselines = {"black": np.full_like(inputs, -0.5), "blur": gaussian_blur(inputs, 0.5).numpy()}
    noise = IG_BASELINES["noise"](tf.constant(inputs), CamOptions(**options)).numpy()
    assert noise.min() >= -0.5 and noise.max() <= 0.5 and noise.std() > 0.2
    np.testing.assert_array_equal(noise[0], noise[1])  # one noise image for every item
    baselines["noise"] = noise
    for name, baseline in baselines.items():
        result = explainer(inputs, Targets((1,)), ["integrated-gradients"],
                           CamOptions(ig_baseline=name, **options))
        attributions = integrated_gradients(explainer, inputs, result.classes, baseline, 16)
        expected = np.maximum(attributions.numpy().sum(axis=-1), 0)
        assert expected.max() > 0
        np.testing.assert_allclose(result.maps["integrated-gradients"], expected,
                                   atol=1e-5 * expected.max(), err_msg=name)


def test_gaussian_blur_impulse_response_and_constants():
    impulse = np.zeros((1, 21, 21, 2), np.float32)
    impulse[0, 10, 10, 1] = 1.0
    blurred = gaussian_blur(tf.constant(impulse), 1.5).numpy()
    taps = np.exp(-0.5 * (np.arange(-5, 6) / 1.5) ** 2)
    expected = np.outer(taps, taps) / taps.sum() ** 2
    np.testing.assert_allclose(blurred[0, 5:16, 5:16, 1], expected, atol=1e-6)
    assert blurred[..., 0].max() == pytest.approx(0.0, abs=1e-7)
    constant = np.full((1, 6, 7, 3), 2.5, np.float32)
    np.testing.assert_allclose(gaussian_blur(tf.constant(constant), 4.0).numpy(), constant,
                               rtol=1e-6)


def test_help_and_choices_list_every_method_and_baseline():
    from click.testing import CliRunner

    from cnnviz_cli.cli import cli
    from cnnviz_cli.techniques.cam import methods

    text = " ".join(CliRunner().invoke(cli, ["cam", "--help"]).output.split())
    assert ", ".join(methods()) in text.replace("gradient- input", "gradient-input")
    assert "--ig-baseline [black|blur|noise]" in text


def test_cli_attributions_with_metrics(run_cli, sample_dir, small_model_file, tmp_path):
    out = tmp_path / "out"
    result = run_cli("-q", "cam", sample_dir / "star.png", "-m", small_model_file,
                     "--preprocess", "unit", "-l", "conv", "--class", "1",
                     "--method", "saliency,integrated-gradients", "--ig-steps", "8",
                     "--metrics", "-o", out, "--json")
    manifest = json.loads(result.output)
    files = {record["file"]: record for record in manifest["outputs"]}
    for method in ("saliency", "integrated-gradients"):
        for suffix in ("", "-heatmap"):
            name = f"star/cam-{method}-class_1{suffix}.png"
            assert name in files and (out / name).is_file()
            assert 0 <= files[name]["deletion_auc"] <= 1 and 0 <= files[name]["insertion_auc"] <= 1
            assert files[name]["heatmap"]["max"] > 0
            assert Image.open(out / name).size == (96, 96)  # the input's own resolution
    assert (out / "star/cam-panel-class_1.png").is_file()
