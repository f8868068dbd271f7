"""The trust metrics (techniques/trust.py) against NumPy computations and known properties."""


import numpy as np
import pytest


@pytest.fixture(scope="module")
def extra_methods():
    """Two maps that do not depend on the weights: a constant one and the input's own edges."""
    import tensorflow as tf

    from cnnviz_cli.techniques.cam import METHODS, method, methods

    methods()  # the registry loaded before the test's methods join it

    @method("test-constant")
    def _constant(cam_pass):
        return tf.ones(tf.shape(cam_pass.inputs)[:3])

    @method("test-edges")
    def _edges(cam_pass):
        gray = tf.reduce_mean(cam_pass.inputs, axis=-1, keepdims=True)
        return tf.norm(tf.image.sobel_edges(gray)[:, :, :, 0, :], axis=-1)

    yield
    del METHODS["test-constant"], METHODS["test-edges"]


@pytest.fixture(scope="module")
def demo(demo_resolved, extra_methods):
    """The demo model's explainer and a CamBatch of four two-shape images."""
    from cnnviz_cli.demo.shapes import make_pairs
    from cnnviz_cli.models.layers import last_feature_map
    from cnnviz_cli.techniques.cam import CamExplainer, CamOptions, Targets

    model = demo_resolved.model
    inputs = demo_resolved.prepare(make_pairs(4, 64, 1)[0])
    explainer = CamExplainer(model, last_feature_map(model).path, (64, 64, 3))
    options = CamOptions(batch_size=32)
    methods = ["gradcam", "eigencam", "test-constant", "test-edges"]
    return explainer, inputs, explainer(inputs, Targets(), methods, options), options


def test_gini_and_entropy_match_numpy():
    from cnnviz_cli.techniques.trust import entropy, gini

    rng = np.random.default_rng(0)
    maps = np.stack([rng.uniform(0, 1, (5, 4)), np.eye(5, 4), np.ones((5, 4)), np.zeros((5, 4))])
    for heat, index, information in zip(maps, gini(maps), entropy(maps), strict=True):
        values = heat.ravel()
        mean_difference = np.abs(values[:, None] - values[None, :]).mean()
        expected_gini = mean_difference / (2 * values.mean()) if values.sum() else 0.0
        share = values / values.sum() if values.sum() else np.full(values.size, 1 / values.size)
        expected_entropy = -sum(p * np.log(p) for p in share if p > 0)
        assert index == pytest.approx(expected_gini, abs=1e-9)
        assert information == pytest.approx(expected_entropy, abs=1e-9)
    one_peak = np.zeros((1, 10, 10))
    one_peak[0, 3, 3] = 2.0
    assert gini(one_peak)[0] == pytest.approx(1 - 1 / 100) and entropy(one_peak)[0] == 0


def test_road_imputes_a_pixel_from_its_neighbours():
    import tensorflow as tf

    from cnnviz_cli.techniques.trust import impute

    rng = np.random.default_rng(1)
    image = rng.uniform(0, 1, (1, 6, 7, 2)).astype(np.float32)
    removed = np.zeros((1, 6, 7, 1), np.float32)
    removed[0, 2, 3] = removed[0, 0, 0] = 1.0
    filled = impute(tf.constant(image), tf.constant(removed)).numpy()
    sides = image[0, [1, 3, 2, 2], [3, 3, 2, 4]].sum(axis=0)
    corners = image[0, [1, 1, 3, 3], [2, 4, 2, 4]].sum(axis=0)
    np.testing.assert_allclose(filled[0, 2, 3], sides / 6 + corners / 12, atol=1e-6)
    # at the corner only 3 neighbours exist: weights 1/6, 1/6, 1/12 renormalised
    expected = (2 * image[0, 0, 1] + 2 * image[0, 1, 0] + image[0, 1, 1]) / 5
    np.testing.assert_allclose(filled[0, 0, 0], expected, atol=1e-6)
    kept = removed[0, ..., 0] == 0
    np.testing.assert_array_equal(filled[0][kept], image[0][kept])


def test_road_imputation_fills_a_hole_in_a_ramp_smoothly():
    """A linear ramp is a fixed point of neighbour averaging: a hole is filled back nearly."""
    import tensorflow as tf

    from cnnviz_cli.techniques.trust import impute

    ramp = np.add.outer(np.arange(16.0), 0.5 * np.arange(16.0))[None, ..., None] / 24
    removed = np.zeros_like(ramp)
    removed[0, 5:10, 6:11] = 1.0
    filled = impute(tf.constant(ramp, tf.float32), tf.constant(removed, tf.float32)).numpy()
    assert np.abs(filled - ramp).max() < 0.02


def _exact_imputation(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """Rong et al.'s linear system solved densely: each removed pixel equals the
    NEIGHBOURS-weighted mean of its neighbours inside the image."""
    from cnnviz_cli.techniques.trust import NEIGHBOURS

    height, width, _ = image.shape
    system, target = np.eye(height * width), image.reshape(height * width, -1).copy()
    for row, column in zip(*np.nonzero(removed), strict=True):
        cell, around = row * width + column, {}
        for (dr, dc), weight in np.ndenumerate(NEIGHBOURS):
            r, c = row + dr - 1, column + dc - 1
            if weight and 0 <= r < height and 0 <= c < width:
                around[r * width + c] = weight
        total = sum(around.values())
        for other, weight in around.items():
            system[cell, other] = -weight / total
        target[cell] = 0
    return np.linalg.solve(system, target).reshape(image.shape)


@pytest.mark.parametrize("share", [0.2, 0.5, 0.9])
def test_road_imputation_is_close_to_the_exact_solution(share):
    """Large holes (a smooth ranking, as a heatmap gives) are filled close to the solution of
    the linear system: Jacobi steps on every level of the pyramid carry the far-away pixels in
    (a coarse fill with 8 Jacobi steps at full size only was 2-4x further off)."""
    import tensorflow as tf

    from cnnviz_cli.techniques.trust import impute

    rng = np.random.default_rng(4)
    image = tf.image.resize(rng.uniform(0, 1, (1, 4, 5, 3)), (24, 30), "bicubic").numpy()[0]
    image += 0.05 * rng.normal(size=image.shape)
    heat = tf.image.resize(rng.normal(size=(1, 3, 3, 1)), (24, 30), "bicubic").numpy()[0, ..., 0]
    removed = heat <= np.quantile(heat, share)
    exact = _exact_imputation(image, removed)
    filled = impute(tf.constant(image[None], tf.float32),
                    tf.constant(removed[None, ..., None], tf.float32)).numpy()[0]
    errors = np.abs(filled - exact)[removed]
    assert errors.mean() < 0.045 and errors.max() < 0.12, (errors.mean(), errors.max())


@pytest.fixture(scope="module")
def linear_model(keras):
    """8x8x1 -> 1x1 conv 'conv' (weight 1) -> flatten -> Dense(2), positive weights, no bias:
    logit_c = sum w_c * x, so gradient x input is exactly each pixel's share of the logit."""
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(1, 1, use_bias=False, name="conv")(inputs)
    outputs = keras.layers.Dense(2, use_bias=False, name="logits")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(2)
    model.set_weights([np.ones((1, 1, 1, 1), np.float32),
                       rng.uniform(0.1, 1.0, (64, 2)).astype(np.float32)])
    return model


def test_mufidelity_of_gradient_times_input_on_a_linear_model_is_one(linear_model):
    from cnnviz_cli.techniques.cam import CamExplainer, CamOptions, Targets
    from cnnviz_cli.techniques.trust import TrustMetrics, removed_subsets

    explainer = CamExplainer(linear_model, "conv", (8, 8, 1))
    inputs = np.random.default_rng(3).uniform(0.2, 1.0, (3, 8, 8, 1)).astype(np.float32)
    options = CamOptions(batch_size=16)
    cam_batch = explainer(inputs, Targets(), ["gradient-input", "saliency"], options)
    fields, _ = TrustMetrics(explainer, ["mufidelity"], options, (8, 8, 1))(inputs, cam_batch)
    assert [item["mufidelity"] for item in fields["gradient-input"]] == pytest.approx(
        [1.0] * 3, abs=1e-4)
    # saliency (|w|, ignoring x) is less faithful; its value is the NumPy correlation
    weights = linear_model.get_weights()[1][:, cam_batch.classes].T.reshape(-1, 8, 8)
    removed = removed_subsets((8, 8)).reshape(len(removed_subsets((8, 8))), -1)
    for item, record in enumerate(fields["saliency"]):
        drops = removed @ (weights[item] * inputs[item, ..., 0]).ravel()
        heat = removed @ weights[item].ravel()
        assert record["mufidelity"] == pytest.approx(np.corrcoef(heat, drops)[0, 1], abs=1e-4)
        assert record["mufidelity"] < 0.99


def test_stability_of_an_input_independent_map_is_zero(demo):
    from cnnviz_cli.techniques.trust import STABILITY_RADIUS, TrustMetrics

    explainer, inputs, cam_batch, options = demo
    fields, _ = TrustMetrics(explainer, ["stability"], options, (64, 64, 3))(inputs, cam_batch)
    assert [item["stability"] for item in fields["test-constant"]] == [0.0] * 4
    gradcam = [item["stability"] for item in fields["gradcam"]]
    assert all(value > 0 for value in gradcam)
    # edges are Lipschitz in the input: |sobel(x + e) - sobel(x)| <= |sobel(e)|, |e| bounded
    spread = np.ptp(inputs, axis=(1, 2, 3))
    norms = np.linalg.norm(cam_batch.maps["test-edges"].reshape(4, -1), axis=1)
    bound = 8 * STABILITY_RADIUS * spread * 64 / norms  # sobel gain <= 8 per pixel, 64x64 px
    assert all(0 < item["stability"] <= limit
               for item, limit in zip(fields["test-edges"], bound, strict=True))


def test_randomisation_on_the_demo_model(demo, demo_resolved):
    from cnnviz_cli.techniques.trust import TrustMetrics

    explainer, inputs, cam_batch, options = demo
    before = [w.copy() for w in demo_resolved.model.get_weights()]
    trust = TrustMetrics(explainer, ["randomisation", "random-logit"], options, (64, 64, 3))
    fields, cascade = trust(inputs, cam_batch)
    assert cascade.labels[0] == "predictions" and cascade.labels[-1] == "block1_conv1"
    assert len(cascade.labels) == 7 and cascade.maps["gradcam"].shape[:2] == (7, 4)
    for record in fields["test-edges"]:
        assert record["randomisation"] == pytest.approx(1.0, abs=1e-9)
        assert record["randomisation_ssim"] == pytest.approx(1.0, abs=1e-5)
        assert record["random_logit"] == pytest.approx(1.0, abs=1e-9)
    gradcam = fields["gradcam"]
    assert np.mean([abs(record["randomisation"]) for record in gradcam]) < 0.3
    assert all(len(record["randomisation_curve"]) == 7 for record in gradcam)
    # the same-class map is the first column again: an independent check of the copy's weights
    assert [record["random_logit"] for record in fields["eigencam"]] == pytest.approx([1.0] * 4)
    assert all(record["random_logit_class"] != cam_batch.classes[item]
               for item, record in enumerate(gradcam))
    after = demo_resolved.model.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def test_rank_correlation_and_ssim_of_known_maps():
    from cnnviz_cli.techniques.trust import rank_correlation, ssim

    rng = np.random.default_rng(4)
    maps = rng.uniform(0, 1, (3, 12, 12))
    with_ties = np.round(maps * 4)
    assert rank_correlation(maps, np.exp(3 * maps)) == pytest.approx([1.0] * 3)
    assert rank_correlation(maps, -maps) == pytest.approx([-1.0] * 3)
    ranks = [np.argsort(np.argsort(m.ravel())) for m in maps]
    tied = [np.array([np.mean(np.flatnonzero(np.sort(t.ravel()) == v)) for v in t.ravel()])
            for t in with_ties]
    expected = [np.corrcoef(r, t)[0, 1] for r, t in zip(ranks, tied, strict=True)]
    assert rank_correlation(maps, with_ties) == pytest.approx(expected)
    assert ssim(maps, 2 * maps, (24, 24)) == pytest.approx([1.0] * 3, abs=1e-5)
    assert np.all(ssim(maps, rng.uniform(0, 1, (3, 12, 12)), (24, 24)) < 0.5)


def test_randomisation_of_a_nested_model_leaves_it_unchanged(nested_model):
    from cnnviz_cli.models.layers import last_feature_map
    from cnnviz_cli.techniques.cam import CamExplainer, CamOptions, Targets
    from cnnviz_cli.techniques.trust import TrustMetrics

    before = [w.copy() for w in nested_model.get_weights()]
    explainer = CamExplainer(nested_model, last_feature_map(nested_model).path, (16, 16, 3))
    inputs = np.random.default_rng(5).uniform(0, 1, (2, 16, 16, 3)).astype(np.float32)
    options = CamOptions(batch_size=8)
    cam_batch = explainer(inputs, Targets(), ["gradcam"], options)
    trust = TrustMetrics(explainer, ["randomisation"], options, (16, 16, 3))
    _, cascade = trust(inputs, cam_batch)
    assert cascade.labels == ["logits", "conv2", "conv1"]
    # the first step re-initialises only the head: the copy's maps differ from the trained
    assert not np.allclose(cascade.maps["gradcam"][0], cam_batch.maps["gradcam"])
    after = nested_model.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    np.testing.assert_allclose(explainer(inputs, Targets(), ["gradcam"], options).maps["gradcam"],
                               cam_batch.maps["gradcam"], atol=1e-6)
