"""Occlusion and RISE against NumPy references on a linear model whose evidence is a known patch."""

import json

import numpy as np
import pytest

from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.techniques.cam import CamExplainer, CamOptions, Targets
from cnnviz_cli.techniques.methods.perturbation import patch_windows, rise_factors

SIZE = 16
EVIDENCE = (slice(4, 8), slice(8, 12))  # rows, columns of the pixels class 0 counts


@pytest.fixture(scope="module")
def evidence_weights():
    """(SIZE * SIZE * 3, 2) weights: class 0 sums the evidence patch, class 1 everything /10."""
    patch = np.zeros((SIZE, SIZE, 3), np.float32)
    patch[EVIDENCE] = 1.0
    return np.stack([patch.ravel(), np.full(patch.size, 0.1, np.float32)], axis=1)


@pytest.fixture(scope="module")
def linear_model(keras, evidence_weights):
    inputs = keras.Input((SIZE, SIZE, 3))
    outputs = keras.layers.Dense(2, name="logits")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    model.set_weights([evidence_weights, np.zeros(2, np.float32)])
    return model


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(3).uniform(0.5, 1.5, (2, SIZE, SIZE, 3)).astype("float32")


def explain(model, images, method: str, **options):
    explainer = CamExplainer(model, None, (SIZE, SIZE, 3))
    return explainer(images, Targets((0,)), [method], CamOptions(**options)).maps[method]


def occlusion_reference(images, weights, patch, stride, fills):
    """Drop of the linear score per patch position, averaged over the positions covering a pixel."""
    rows, columns = patch_windows(SIZE, patch, stride), patch_windows(SIZE, patch, stride)
    total, count = np.zeros((len(images), SIZE, SIZE)), np.zeros((SIZE, SIZE))
    for row in rows:
        for column in columns:
            hidden = (row[:, None] * column[None, :])[..., None]
            occluded = images + hidden * (fills - images)
            drop = (images - occluded).reshape(len(images), -1) @ weights
            total += drop[:, None, None] * hidden[..., 0]
            count += hidden[..., 0]
    return np.maximum(total / count, 0)


@pytest.mark.parametrize("fill", ["black", "mean"])
def test_occlusion_matches_its_reference_and_peaks_on_the_evidence(
        linear_model, images, evidence_weights, fill):
    maps = explain(linear_model, images, "occlusion", patch=4, stride=3, fill=fill, batch_size=7)
    fills = (np.zeros_like(images) if fill == "black"
             else np.broadcast_to(images.mean(axis=(1, 2), keepdims=True), images.shape))
    expected = occlusion_reference(images, evidence_weights[:, 0], 4, 3, fills)
    np.testing.assert_allclose(maps, expected, atol=1e-4 * expected.max())
    for heat in maps:
        peak = np.unravel_index(heat.argmax(), heat.shape)
        assert EVIDENCE[0].start <= peak[0] < EVIDENCE[0].stop
        assert EVIDENCE[1].start <= peak[1] < EVIDENCE[1].stop


def test_every_pixel_is_covered_by_a_patch_position():
    windows = patch_windows(10, 4, 4)
    assert windows.sum(axis=0).min() == pytest.approx(1)
    assert windows[-1, -1] == 1  # a last position ends at the edge


def test_a_patch_larger_than_the_input_is_refused(linear_model, images):
    with pytest.raises(CnnvizError, match="--patch 20 is larger than the 16x16"):
        explain(linear_model, images, "occlusion", patch=20)


def test_rise_matches_its_reference_and_peaks_on_the_evidence(linear_model, images,
                                                             evidence_weights):
    count = 600
    maps = explain(linear_model, images, "rise", masks=count, seed=5, batch_size=64)
    rows, grids, columns = rise_factors(count, (SIZE, SIZE), 5)
    masks = np.einsum("nhs,nst,nwt->nhw", rows, grids, columns)
    masked = images[:, None] * masks[None, ..., None]
    scores = masked.reshape(2, count, -1) @ evidence_weights[:, 0]
    centred = scores - scores.mean(axis=1, keepdims=True)
    expected = np.maximum(np.einsum("in,nhw->ihw", centred, masks) / (count * 0.5), 0)
    np.testing.assert_allclose(maps, expected, atol=1e-4 * expected.max())
    inside = np.zeros((SIZE, SIZE), bool)
    inside[EVIDENCE] = True
    for heat in maps:
        assert heat[inside].mean() > 3 * heat[~inside].mean()


def test_rise_masks_are_smooth_binary_grids_kept_half_the_time():
    rows, grids, columns = rise_factors(400, (20, 12), 1)
    masks = np.einsum("nhs,nst,nwt->nhw", rows, grids, columns)
    assert masks.shape == (400, 20, 12)
    assert masks.min() >= 0 and masks.max() <= 1 + 1e-6
    assert abs(masks.mean() - 0.5) < 0.03
    assert np.abs(np.diff(masks, axis=1)).max() < 0.6  # upsampled: no hard cell borders


def test_the_same_seed_gives_the_same_bytes_and_another_seed_other_masks(linear_model, images):
    first = explain(linear_model, images, "rise", masks=50, seed=2, batch_size=16)
    again = explain(linear_model, images, "rise", masks=50, seed=2, batch_size=16)
    other = explain(linear_model, images, "rise", masks=50, seed=3, batch_size=16)
    assert first.tobytes() == again.tobytes()
    assert not np.allclose(first, other)
    rebatched = explain(linear_model, images, "rise", masks=50, seed=2, batch_size=7)
    np.testing.assert_allclose(rebatched, first, atol=1e-5 * first.max())


def test_cam_command_writes_occlusion_and_rise_maps(run_cli, tmp_path):
    out = tmp_path / "out"
    run_cli("cam", "sample_images/star.png", "--method", "occlusion,rise", "--patch", "32",
            "--stride", "32", "--fill", "blur", "--masks", "40", "--seed", "1", "--save-npy",
            "-q", "-o", out)
    entries = json.loads((out / "manifest.json").read_text())["outputs"]
    methods = {entry["method"] for entry in entries if entry.get("kind") == "map"}
    assert methods == {"occlusion", "rise"}
    heat = np.load(next(out.glob("star/cam-occlusion-*.npy")))
    assert heat.shape == (128, 128) and heat.max() > 0


@pytest.mark.parametrize(("args", "culprit"), [
    (["--patch", "8"], "--patch applies only when --method includes occlusion"),
    (["--fill", "blur"], "--fill applies only when --method includes occlusion"),
    (["--masks", "8"], "--masks applies only when --method includes rise"),
    (["--method", "occlusion", "--seed", "3"], "--seed applies only when a method or metric"),
])
def test_perturbation_options_without_their_method_are_refused(run_cli, args, culprit):
    result = run_cli("cam", "sample_images/star.png", *args, expect=2)
    assert culprit in result.output
