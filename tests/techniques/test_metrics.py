"""Faithfulness and agreement metrics on maps and models whose answers are known: deletion and
insertion, the pointing game, region energy, map correlation and top-region IoU."""

import numpy as np
import pytest

from cnnviz_cli.techniques.agreement import correlation, region_energy, top_region_iou
from cnnviz_cli.techniques.cam import CamExplainer
from cnnviz_cli.techniques.metrics import deletion_insertion, pointing_game


@pytest.fixture(scope="module")
def corner_model(keras):
    """Looks only at the top-left 4x4 corner: logit_0 = 2 * (sum of the corner's channel means)."""
    inputs = keras.Input((8, 8, 3))
    corner = keras.layers.Cropping2D(((0, 4), (0, 4)), name="corner")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(corner)
    outputs = keras.layers.Dense(2, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.set_weights([np.array([[2.0, 0.0]] * 3, "float32"), np.zeros(2, "float32")])
    return model


def test_deletion_insertion_known_answer(corner_model):
    steps = 8
    corner = np.zeros((8, 8), bool)
    corner[:4, :4] = True
    tie_break = np.random.default_rng(0).permutation(64).reshape(8, 8) / 1000
    maps = np.stack([corner + tie_break, ~corner + tie_break])  # corner first / corner last
    explainer = CamExplainer(corner_model, "corner", (8, 8, 3))
    curves = deletion_insertion(explainer, np.ones((2, 8, 8, 3), "float32"), np.zeros(2, int),
                                maps, steps, batch_size=7)
    touched = np.round(np.arange(steps + 1) * 64 / steps)  # pixels deleted or inserted
    in_corner = {"first": np.minimum(touched, 16), "last": np.maximum(touched - 48, 0)}

    def probability(corner_pixels_on):
        return 1 / (1 + np.exp(-2.0 * 3 * corner_pixels_on / 16))

    for row, order in enumerate(("first", "last")):
        np.testing.assert_allclose(curves.deletion[row], probability(16 - in_corner[order]),
                                   rtol=1e-5)
        np.testing.assert_allclose(curves.insertion[row], probability(in_corner[order]),
                                   rtol=1e-5)
    expected = np.trapezoid(probability(16 - in_corner["first"]), dx=1 / steps)
    assert curves.deletion_auc[0] == pytest.approx(expected, rel=1e-5)
    assert curves.deletion_auc[0] < curves.deletion_auc[1]
    assert curves.insertion_auc[0] > curves.insertion_auc[1]


def test_deletion_insertion_of_a_sigmoid_head_match_numpy(keras):
    """A linear 1x1 conv -> GAP -> Dense(1, sigmoid): every curve point computed by hand."""
    from cnnviz_cli.techniques.cam import CamExplainer
    from cnnviz_cli.techniques.metrics import deletion_insertion

    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(1, 1, name="conv")(inputs)
    x = keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, x)
    kernel, bias, weight, dense_bias = (np.float64(v) for v in ([[[[0.5], [-1.0], [2.0]]]],
                                                                [0.1], [[1.5]], [-0.2]))
    model.set_weights([np.float32(v) for v in (kernel, bias, weight, dense_bias)])
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 4, 4, 3)).astype("float32")
    maps = rng.random((2, 4, 4)).astype("float32")
    steps, classes = 4, np.array([1, 0])
    curves = deletion_insertion(CamExplainer(model, "conv", (4, 4, 3)), x, classes, maps, steps)

    def probability(images, positive):
        logit = ((images @ kernel[0, 0])[..., 0] + bias[0]).mean(axis=(1, 2)) * 1.5 - 0.2
        p = 1 / (1 + np.exp(-logit))
        return np.where(positive, p, 1 - p)

    order = np.argsort(np.argsort(-maps.reshape(2, -1), axis=1, kind="stable"), axis=1)
    deletion, insertion = [], []
    for stage in range(steps + 1):
        hot = (order < round(stage * 16 / steps)).reshape(2, 4, 4, 1)
        deletion.append(probability(x * ~hot, classes == 1))
        insertion.append(probability(x * hot, classes == 1))
    np.testing.assert_allclose(curves.deletion, np.array(deletion).T, rtol=1e-5)
    np.testing.assert_allclose(curves.insertion, np.array(insertion).T, rtol=1e-5)
    assert not np.allclose(curves.deletion_auc, 1.0) and not np.allclose(curves.insertion_auc, 1)
    assert not np.allclose(curves.deletion_auc, curves.insertion_auc)


def test_pointing_game_hits_at_the_maximum_and_never_without_heat():
    maps = np.zeros((3, 4, 4))
    maps[0, 1, 2] = 1.0
    maps[1, 3, 3] = 1.0
    masks = np.zeros((3, 4, 4), bool)
    masks[:, :2, :] = True  # the top half; the map of item 2 is all zero, its argmax (0, 0) inside
    assert pointing_game(maps, masks).tolist() == [True, False, False]
    # a map smaller than its mask is upsampled: top right and bottom left against the top right
    maps, masks = np.zeros((2, 4, 4)), np.zeros((2, 16, 16), bool)
    maps[0, 0, 3] = maps[1, 3, 0] = 1.0
    masks[:, :8, 8:] = True
    assert pointing_game(maps, masks).tolist() == [True, False]


def test_region_energy_is_the_share_of_heat_inside_the_mask():
    maps = np.array([[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]], [[-5.0, 1.0], [1.0, 2.0]]])
    masks = np.array([[[True, False], [False, True]]] * 3)
    # (1 + 4) / 10; a map without heat: 0; negative heat is left out: 2 / 4
    np.testing.assert_allclose(region_energy(maps, masks), [0.5, 0.0, 0.5], rtol=1e-6)


def test_region_energy_upsamples_the_map_bilinearly():
    # columns 0 and 1 of a 2x2 map at 4 px (half-pixel centres): 0, 0.25, 0.75, 1
    maps = np.array([[[0.0, 1.0], [0.0, 1.0]]])
    masks = np.zeros((1, 4, 4), bool)
    masks[:, :, 2:] = True
    np.testing.assert_allclose(region_energy(maps, masks), [1.75 / 2.0], rtol=1e-6)


def test_correlation_matches_numpy_and_handles_sizes_and_constants():
    rng = np.random.default_rng(0)
    first, second = rng.random((7, 7)), rng.random((7, 7))
    assert correlation(first, second) == pytest.approx(np.corrcoef(first.ravel(),
                                                                   second.ravel())[0, 1])
    assert correlation(first, -first) == pytest.approx(-1.0)
    assert correlation(first, 3 * first + 1) == pytest.approx(1.0)
    # a map against itself at twice the resolution: both compared at 14x14, the same map
    bigger = np.kron(first, np.ones((2, 2)))
    assert 0.9 < correlation(first, bigger) < 1.0
    assert correlation(np.ones((7, 7)), np.full((7, 7), 2.0)) == 1.0
    assert correlation(np.zeros((7, 7)), first) == 0.0


def test_top_region_iou_matches_a_set_computation():
    rng = np.random.default_rng(1)
    for _ in range(5):
        first, second = rng.random((5, 7)), rng.random((5, 7))
        top = [set(sorted(range(35), key=lambda i, m=m: -m.ravel()[i])[:7])
               for m in (first, second)]
        expected = len(top[0] & top[1]) / len(top[0] | top[1])
        assert top_region_iou(first, second) == pytest.approx(expected)
    assert top_region_iou(first, first) == 1.0
    assert top_region_iou(first, -first) == 0.0  # hottest 7 of one are the coldest of the other

