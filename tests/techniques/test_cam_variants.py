"""EigenGradCAM, AblationCAM, KPCA-CAM, Finer-CAM and the aug_smooth and eigen_smooth
modifiers against NumPy computations on small models with known weights."""

import numpy as np
import pytest

from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.techniques.cam import CamExplainer, CamOptions, Targets, methods

HEIGHT, WIDTH, CHANNELS, FILTERS, CLASSES = 6, 5, 3, 4, 5  # non-square on purpose
SHAPE = (HEIGHT, WIDTH, CHANNELS)


def with_random_weights(model, seed):
    rng = np.random.default_rng(seed)
    model.set_weights([0.5 * rng.normal(size=w.shape).astype("float32") for w in model.weights])
    return model


@pytest.fixture(scope="module")
def flat_model(keras):
    """input 6x5x3 -> conv 'conv' (4 filters 3x3, ReLU) -> Flatten -> Dense(5, softmax)."""
    inputs = keras.Input(SHAPE)
    x = keras.layers.Conv2D(FILTERS, 3, padding="same", activation="relu", name="conv")(inputs)
    outputs = keras.layers.Dense(CLASSES, activation="softmax")(keras.layers.Flatten()(x))
    return with_random_weights(keras.Model(inputs, outputs), seed=11)


@pytest.fixture(scope="module")
def skip_model(keras):
    """A skip connection around the explained layer: first -> conv, first + conv -> Dense(5),
    so what follows 'conv' needs more than its map."""
    inputs = keras.Input(SHAPE)
    first = keras.layers.Conv2D(FILTERS, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(FILTERS, 3, padding="same", activation="relu", name="conv")(first)
    x = keras.layers.Flatten()(keras.layers.Add()([first, x]))
    outputs = keras.layers.Dense(CLASSES, activation="softmax")(x)
    return with_random_weights(keras.Model(inputs, outputs), seed=12)


def conv_relu(x, kernel, bias):
    """'same' cross-correlation + bias + ReLU, batch first, in float64."""
    half = kernel.shape[0] // 2
    padded = np.pad(np.float64(x), ((0, 0), (half, half), (half, half), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, kernel.shape[:2], axis=(1, 2))
    return np.maximum(np.einsum("nhwcij,ijco->nhwo", windows, kernel) + bias, 0.0)


def reference(model, x):
    """(A at 'conv', logits(changed A, item) of item `item` (default: all), d logits / d A
    (h, w, k, classes)) in NumPy."""
    weights = [np.float64(w) for w in model.get_weights()]
    if len(weights) == 4:  # flat_model
        kernel, bias, dense, dense_bias = weights
        before = np.zeros(len(x))[:, None, None, None]
        activations = conv_relu(x, kernel, bias)
    else:  # skip_model
        kernel1, bias1, kernel, bias, dense, dense_bias = weights
        before = conv_relu(x, kernel1, bias1)
        activations = conv_relu(before, kernel, bias)

    def logits(changed, item=slice(None)):
        return (before[item] + changed).reshape(len(changed), -1) @ dense + dense_bias

    return activations, logits, dense.reshape(*activations.shape[1:], CLASSES)


def gradcam(weights, activations):
    return np.maximum(np.einsum("k,hwk->hw", weights, activations), 0)


def first_component(weighted):
    """The centred weighted activations (h, w, k) projected on their first principal
    component, oriented to agree with their channel sum, ReLU."""
    flat = weighted.reshape(-1, weighted.shape[-1])
    centred = flat - flat.mean(axis=0)
    projection = centred @ np.linalg.svd(centred)[2][0]
    projection *= np.sign(projection @ flat.sum(axis=1))
    return np.maximum(projection.reshape(weighted.shape[:2]), 0)


def inputs(seed, count=2):
    return np.random.default_rng(seed).normal(size=(count, *SHAPE)).astype("float32")


def explain(model, x, methods_, classes=(3, 1), **options):
    explainer = CamExplainer(model, "conv", SHAPE)
    return explainer(x, Targets(classes), methods_, CamOptions(**options))


def assert_maps(result, expected, name):
    expected = np.stack(expected)
    assert expected.max() > 0, name  # not trivially zero
    np.testing.assert_allclose(result.maps[name], expected, atol=2e-5 * expected.max(),
                               err_msg=name)


def test_eigengradcam_is_the_first_component_of_activations_times_gradients(flat_model):
    x = inputs(1)
    result = explain(flat_model, x, ["eigengradcam"])
    activations, _, gradients = reference(flat_model, x[result.image_indices])
    expected = [first_component(activations[item] * gradients[..., c])
                for item, c in enumerate(result.classes)]
    assert_maps(result, expected, "eigengradcam")


def ablation_weights(logits, activations, item, c):
    """(score - score with channel k zeroed) / |score| for every channel k of an item."""
    score = logits(activations[item:item + 1], item)[0, c]
    ablated = np.repeat(activations[item:item + 1], FILTERS, axis=0)
    ablated[np.arange(FILTERS), ..., np.arange(FILTERS)] = 0.0
    return (score - logits(ablated, item)[:, c]) / abs(score)


@pytest.mark.parametrize("model_name", ["flat_model", "skip_model"])
def test_ablationcam_weighs_channels_by_the_score_drop_when_zeroed(model_name, request):
    """The part after the layer alone (flat_model), or the whole model with its input
    (skip_model); passes of 3 copies split the 5 copies of an item."""
    model = request.getfixturevalue(model_name)
    x = inputs(2)
    result = explain(model, x, ["ablationcam"], batch_size=3)
    activations, logits, _ = reference(model, x[result.image_indices])
    expected = [gradcam(ablation_weights(logits, activations, item, c), activations[item])
                for item, c in enumerate(result.classes)]
    np.testing.assert_allclose(result.scores, logits(activations)[np.arange(4), result.classes],
                               rtol=1e-5)
    assert_maps(result, expected, "ablationcam")


def kernel_pca(activations, kernel, gamma):
    """scikit-learn's KernelPCA(n_components=1).fit_transform of the centred positions,
    oriented to agree with the activations' channel sum, ReLU."""
    flat = activations.reshape(-1, activations.shape[-1])
    x = flat - flat.mean(axis=0)
    products = x @ x.T
    distances = ((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=-1)
    matrix = {"sigmoid": np.tanh(gamma * products + 1), "rbf": np.exp(-gamma * distances),
              "poly": (gamma * products + 1) ** 3}[kernel]
    size = len(matrix)
    centring = np.eye(size) - np.full((size, size), 1 / size)
    values, vectors = np.linalg.eigh(centring @ matrix @ centring)
    component = vectors[:, -1] * np.sqrt(values[-1])
    component *= np.sign(component @ flat.sum(axis=1))
    return np.maximum(component.reshape(activations.shape[:2]), 0)


@pytest.mark.parametrize(("kernel", "gamma"), [("sigmoid", None), ("rbf", 0.3), ("poly", 0.2)])
def test_kpcacam_is_the_first_kernel_principal_component(flat_model, kernel, gamma):
    x = inputs(3)
    result = explain(flat_model, x, ["kpcacam"], kpca_kernel=kernel, kpca_gamma=gamma)
    activations = reference(flat_model, x[result.image_indices])[0]
    expected = [kernel_pca(maps, kernel, gamma or 1 / FILTERS) for maps in activations]
    assert_maps(result, expected, "kpcacam")


@pytest.mark.parametrize(("alpha", "count"), [(1.0, 3), (0.7, 2)])
def test_finercam_is_gradcam_of_the_class_against_its_closest_classes(
        flat_model, alpha, count):
    x = inputs(4)
    result = explain(flat_model, x, ["finercam"], finer_alpha=alpha, finer_classes=count)
    activations, logits, gradients = reference(flat_model, x[result.image_indices])
    expected = []
    for item, c in enumerate(result.classes):
        scores = logits(activations[item:item + 1], item)[0]
        distances = np.abs(scores - scores[c])
        distances[c] = np.inf
        similar = np.argsort(distances)[:count]
        weights = np.exp(scores[similar]) / np.exp(scores[similar]).sum()
        contrast = gradients[..., c] - alpha * np.einsum("j,hwkj->hwk", weights,
                                                         gradients[..., similar])
        expected.append(gradcam(contrast.mean(axis=(0, 1)), activations[item]))
    assert_maps(result, expected, "finercam")


def test_finercam_refuses_an_output_of_one_class(keras):
    inputs_ = keras.Input(SHAPE)
    x = keras.layers.Conv2D(FILTERS, 3, padding="same", activation="relu", name="conv")(inputs_)
    model = keras.Model(inputs_, keras.layers.Dense(1)(keras.layers.Flatten()(x)))
    with pytest.raises(CnnvizError, match="finercam compares the class with other classes"):
        explain(with_random_weights(model, 13), inputs(5), ["finercam"], classes=(0,))


@pytest.mark.parametrize("name", ["gradcam", "layercam", "hirescam", "ablationcam"])
def test_eigen_smooth_combines_the_weighted_activations_by_their_first_component(
        flat_model, name):
    x = inputs(6)
    result = explain(flat_model, x, [name], eigen_smooth=True)
    activations, logits, gradients = reference(flat_model, x[result.image_indices])
    expected = []
    for item, c in enumerate(result.classes):
        g = gradients[..., c]
        weights = (ablation_weights(logits, activations, item, c) if name == "ablationcam"
                   else {"gradcam": g.mean(axis=(0, 1)), "layercam": np.maximum(g, 0),
                         "hirescam": g}[name])
        expected.append(first_component(weights * activations[item]))
    assert_maps(result, expected, name)


def zoom(images, scale, flip=False):
    """(n, h, w[, c]) images zoomed by `scale` about the centre (flipped left-right),
    interpolated linearly, edge values repeated outside."""
    for axis, sign in ((1, 1), (2, -1 if flip else 1)):
        length = images.shape[axis]
        centre = (length - 1) / 2
        positions = centre + sign * (np.arange(length) - centre) / scale
        images = np.apply_along_axis(
            lambda line, positions=positions: np.interp(positions, np.arange(len(line)), line),
            axis, images)
    return images


@pytest.mark.parametrize("eigen_smooth", [False, True])
def test_aug_smooth_averages_the_maps_of_flipped_and_zoomed_inputs_brought_back(
        flat_model, eigen_smooth):
    x = inputs(7)
    result = explain(flat_model, x, ["gradcam"], aug_smooth=True, eigen_smooth=eigen_smooth)
    gradients = reference(flat_model, x)[2]
    total = 0.0
    for scale in (1.0, 0.9, 1.1):
        for flip in (False, True):
            activations = reference(flat_model, zoom(np.float64(x), scale, flip))[0]
            maps = []
            for item, c in enumerate(result.classes):
                image = result.image_indices[item]
                weighted = gradients[..., c].mean(axis=(0, 1)) * activations[image]
                maps.append(first_component(weighted) if eigen_smooth
                            else np.maximum(weighted.sum(axis=-1), 0))
            total = total + zoom(np.stack(maps), 1 / scale, flip)
    assert_maps(result, list(total / 6), "gradcam")


def test_new_methods_and_modifiers_are_specs_the_command_derives_from():
    from cnnviz_cli.api.cam import table

    specs = methods()
    for name in ("eigengradcam", "ablationcam", "kpcacam", "finercam"):
        assert specs[name].needs == "layer"
    names = {name: {option.name for option in spec.modifier_options}
             for name, spec in specs.items()}
    assert names["gradcam"] == names["finercam"] == {"aug_smooth", "eigen_smooth"}
    assert names["eigencam"] == names["kpcacam"] == names["eigengradcam"] == {"aug_smooth"}
    assert names["saliency"] == names["rise"] == set()

    options = table()
    given = {"images": ["a.png"], "methods": ["gradcam"], "kpca_kernel": "rbf"}
    settings = options.settle(given)
    with pytest.raises(CnnvizError, match="--kpca-kernel applies only when --method includes "
                                          "kpcacam"):
        options.refuse_ignored(settings, options.given(settings))
    settings = options.settle({**given, "methods": ["kpcacam", "finercam"], "finer_alpha": 0.5,
                               "aug_smooth": True})
    options.refuse_ignored(settings, options.given(settings))
    assert options.command_line(settings) == (
        "cnnviz cam a.png --method kpcacam --method finercam --aug-smooth --kpca-kernel rbf "
        "--finer-alpha 0.5")



def test_ablationcam_on_token_layers_matches_the_feature_map_they_reshape(keras):
    """Zeroing a channel of tokens on a grid is zeroing it in the map they reshape; with a
    class token before the grid, what follows needs the input too, and the map stays whole."""
    side = 6  # tokens on a square grid
    inputs_ = keras.Input((side, side, CHANNELS))
    conv = keras.layers.Conv2D(FILTERS, 3, padding="same", activation="relu", name="conv")(inputs_)
    tokens = keras.layers.Reshape((side * side, FILTERS), name="tokens")(conv)
    summary = keras.layers.Reshape((1, FILTERS))(keras.layers.GlobalAveragePooling1D()(tokens))
    with_class = keras.layers.Concatenate(axis=1, name="with_class")([summary, tokens])
    pooled = keras.layers.Flatten()(keras.layers.Dense(FILTERS, activation="relu")(with_class))
    model = with_random_weights(keras.Model(inputs_, keras.layers.Dense(CLASSES)(pooled)), 14)
    x = np.random.default_rng(8).normal(size=(2, side, side, CHANNELS)).astype("float32")
    maps = {layer: CamExplainer(model, layer, x.shape[1:])(
        x, Targets((2,)), ["ablationcam"], CamOptions(batch_size=3)).maps["ablationcam"]
        for layer in ("conv", "tokens", "with_class")}
    assert maps["conv"].max() > 0
    np.testing.assert_allclose(maps["tokens"], maps["conv"], atol=1e-5 * maps["conv"].max())
    kernel, bias, mixer, mixer_bias, dense, dense_bias = map(np.float64, model.get_weights())
    grid = conv_relu(x, kernel, bias).reshape(2, side * side, FILTERS)
    expected = []
    for item in range(2):
        changed = np.repeat(grid[item:item + 1], FILTERS + 1, axis=0)
        changed[np.arange(FILTERS), :, np.arange(FILTERS)] = 0.0  # the last copy: unchanged
        with_token = np.concatenate([np.repeat(grid[item].mean(axis=0)[None, None], FILTERS + 1,
                                               axis=0), changed], axis=1)
        mixed = np.maximum(with_token @ mixer + mixer_bias, 0)
        scores = mixed.reshape(FILTERS + 1, -1) @ dense[:, 2] + dense_bias[2]
        weights = (scores[-1] - scores[:-1]) / abs(scores[-1])
        expected.append(gradcam(weights, grid[item].reshape(side, side, FILTERS)))
    # score drops over the score: float32 cancellation, hence 1e-4
    np.testing.assert_allclose(maps["with_class"], expected, atol=1e-4 * np.max(expected))
