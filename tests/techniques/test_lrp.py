"""LRP against an independent NumPy LRP on small models with chosen weights.

The NumPy side writes every linear layer as an explicit matrix acting on the flattened input
(built by loops over output positions and kernel offsets) and applies each rule in its
textbook form R_j = sum_k c_jk / d_k R_k over the contributions c_jk (Montavon et al. 2019).
"""

import numpy as np
import pytest

from cnnviz_cli.errors import CnnvizError

STABILISER = 1e-6
EPSILON = 0.1


# ---------------------------------------------------------------- NumPy: layers as matrices

def conv_matrix(kernel, in_shape, padding="same", depthwise=False):
    """(matrix (out units, in units), connectivity mask, output shape) of a stride-1 2-D
    convolution (depthwise: kernel (kh, kw, channels, multiplier))."""
    kh, kw = kernel.shape[:2]
    height, width, channels = in_shape
    outputs = kernel.shape[2] * kernel.shape[3] if depthwise else kernel.shape[3]
    top, left = ((kh - 1) // 2, (kw - 1) // 2) if padding == "same" else (0, 0)
    out_h, out_w = (height, width) if padding == "same" else (height - kh + 1, width - kw + 1)
    matrix = np.zeros((out_h * out_w * outputs, height * width * channels))
    mask = np.zeros_like(matrix)
    for i in range(out_h):
        for j in range(out_w):
            for a in range(kh):
                for b in range(kw):
                    r, c = i + a - top, j + b - left
                    if not (0 <= r < height and 0 <= c < width):
                        continue
                    out0, in0 = (i * out_w + j) * outputs, (r * width + c) * channels
                    for ci in range(channels):
                        targets = (range(ci * kernel.shape[3], (ci + 1) * kernel.shape[3])
                                   if depthwise else range(outputs))
                        for n, co in enumerate(targets):
                            matrix[out0 + co, in0 + ci] = kernel[a, b, ci, n if depthwise else co]
                            mask[out0 + co, in0 + ci] = 1.0
    return matrix, mask, (out_h, out_w, outputs)


def gap_matrix(in_shape):
    height, width, channels = in_shape
    matrix = np.zeros((channels, height * width * channels))
    for position in range(height * width):
        matrix[:, position * channels:(position + 1) * channels] = np.eye(channels)
    return matrix / (height * width)


def max_pool(values, shape):
    """2x2 max pooling: (pooled flat values, index of each output's winner, output shape)."""
    height, width, channels = shape
    grid = values.reshape(shape)
    pooled, winners = [], []
    for i in range(height // 2):
        for j in range(width // 2):
            for ch in range(channels):
                cells = [((2 * i + a) * width + 2 * j + b) * channels + ch
                         for a in (0, 1) for b in (0, 1)]
                best = max(cells, key=lambda cell: values[cell])
                pooled.append(values[best])
                winners.append(best)
    del grid
    return np.array(pooled), np.array(winners), (height // 2, width // 2, channels)


def routed(relevance, winners, size):
    out = np.zeros(size)
    np.add.at(out, winners, relevance)
    return out


def average_pooled(relevance, inputs, winners, shape):
    """Max pooling's relevance split as 2x2 average pooling would (epsilon rule)."""
    matrix = np.zeros((len(winners), len(inputs)))
    height, width, channels = shape
    row = 0
    for i in range(height // 2):
        for j in range(width // 2):
            for ch in range(channels):
                for a in (0, 1):
                    for b in (0, 1):
                        matrix[row, ((2 * i + a) * width + 2 * j + b) * channels + ch] = 0.25
                row += 1
    return numpy_rule("epsilon")(matrix, np.zeros(len(winners)), inputs, relevance, None, None)


def stab(values, epsilon=STABILISER):
    return values + np.where(values >= 0, epsilon, -epsilon)


def numpy_rule(name):
    """rule(matrix, bias, x, R_out, mask, bounds) -> R_in, each in its textbook form."""

    def spread(contributions, denominators, relevance):
        return (contributions / denominators[:, None] * relevance[:, None]).sum(axis=0)

    def epsilon(m, b, x, r, mask, bounds, value=EPSILON):
        return spread(m * x, stab(m @ x + b, value), r)

    def gamma(m, b, x, r, mask, bounds, value=0.25):
        changed, bias = m + value * np.maximum(m, 0), b + value * np.maximum(b, 0)
        return spread(changed * x, stab(changed @ x + bias), r)

    def alpha_beta(alpha, beta):
        def rule(m, b, x, r, mask, bounds):
            contributions = m * x
            positive, negative = np.maximum(contributions, 0), np.minimum(contributions, 0)
            z_pos = positive.sum(axis=1) + np.maximum(b, 0)
            z_neg = negative.sum(axis=1) + np.minimum(b, 0)
            return (alpha * spread(positive, stab(z_pos), r)
                    - beta * spread(negative, stab(z_neg), r))
        return rule

    def z_box(m, b, x, r, mask, bounds):
        low, high = bounds
        contributions = m * x - np.maximum(m, 0) * low - np.minimum(m, 0) * high
        return spread(contributions, stab(contributions.sum(axis=1) + b), r)

    def flat(m, b, x, r, mask, bounds):
        return spread(mask, stab(mask.sum(axis=1)), r)

    return {"epsilon": epsilon, "gamma": gamma, "alpha1beta0": alpha_beta(1.0, 0.0),
            "alpha2beta1": alpha_beta(2.0, 1.0), "zbox": z_box, "flat": flat}[name]


def tf_rule(name):
    from cnnviz_cli.techniques.lrp import rules

    return {"epsilon": rules.epsilon(EPSILON), "gamma": rules.gamma(0.25),
            "alpha1beta0": rules.alpha_beta(1.0, 0.0), "alpha2beta1": rules.alpha_beta(2.0, 1.0),
            "zbox": rules.z_box, "flat": rules.flat}[name]


def composite(first, conv, dense):
    """A composite of the rules named, the NumPy side's choice too (pool: epsilon)."""

    def choose(kind, is_first, settings):
        if kind == "pool":
            return tf_rule("epsilon")
        return tf_rule(first if is_first else conv if kind == "conv" else dense)

    return choose


def numpy_lrp(steps, x, item_class, rules, bounds=None):
    """Relevance of one input through `steps`: [("linear", kind, matrix, bias, mask) |
    ("relu",) | ("pool", shape) | ("avgpool", shape) | ("affine", scale, shift)] applied to
    the flat input in order. `rules` maps (kind, first) to a NumPy rule. Returns the relevance
    and the explained logit."""
    values, saved, first = x.reshape(-1).astype(np.float64), [], True
    for step in steps:
        saved.append(values)
        if step[0] == "linear":
            values = step[2] @ values + step[3]
        elif step[0] == "relu":
            values = np.maximum(values, 0)
        elif step[0] == "affine":
            values = values * step[1] + step[2]
        else:
            values, winners, _ = max_pool(values, step[1])
            saved[-1] = (saved[-1], winners)
    relevance = np.zeros_like(values)
    relevance[item_class] = values[item_class]
    linear_positions = [n for n, step in enumerate(steps) if step[0] == "linear"]
    for n in reversed(range(len(steps))):
        step = steps[n]
        if step[0] == "linear":
            first = n == linear_positions[0]
            relevance = rules(step[1], first)(step[2], step[3], saved[n], relevance, step[4],
                                              bounds if first else None)
        elif step[0] == "pool":
            relevance = routed(relevance, saved[n][1], len(saved[n][0]))
        elif step[0] == "avgpool":
            relevance = average_pooled(relevance, *saved[n], step[1])
    return relevance, values[item_class]


def numpy_rules(first, conv, dense):
    return lambda kind, is_first: numpy_rule(
        first if is_first else conv if kind == "conv" else dense)


# ---------------------------------------------------------------------- the Keras side

def randomised(model, seed):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32")
                       if "variance" in v.path else rng.normal(0, 0.6, w.shape).astype("float32")
                       for w, v in zip(model.get_weights(), model.weights, strict=True)])
    return model


@pytest.fixture(scope="module")
def plain_model(keras):
    """6x8x3 -> conv (3x3, 4, ReLU) -> max pool -> conv (3x3, 5, ReLU) -> flatten -> dense 3."""
    inputs = keras.Input((6, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="dense")(x)
    return randomised(keras.Model(inputs, outputs), 0)


def plain_steps(model, rescale=False):
    w = {layer.name: layer.get_weights() for layer in model.layers}
    conv1, mask1, shape1 = conv_matrix(w["conv1"][0], (6, 8, 3))
    conv2, mask2, shape2 = conv_matrix(w["conv2"][0], (3, 4, 4))
    steps = [("linear", "conv", conv1, np.tile(w["conv1"][1], 48), mask1), ("relu",),
             ("pool", shape1),
             ("linear", "conv", conv2, np.tile(w["conv2"][1], 12), mask2), ("relu",),
             ("linear", "dense", w["dense"][0].T, w["dense"][1], None)]
    return ([("affine", 1 / 127.5, -1.0)] if rescale else []) + steps


def class_score(outputs, classes):
    import tensorflow as tf

    return tf.gather(outputs, classes, axis=1, batch_dims=1)


def explain(model, inputs, classes, **options):
    from cnnviz_cli.techniques.lrp import LrpExplainer, LrpOptions

    explainer = LrpExplainer(model, class_score, LrpOptions(**options))
    return explainer(inputs, np.array(classes, np.int32))


def assert_matches(found, expected):
    scale = np.abs(expected).max()
    assert scale > 0
    assert np.abs(found - expected).max() <= 1e-5 * scale, np.abs(found - expected).max() / scale


RULE_CHOICES = [
    ("epsilon", "epsilon", "epsilon"),
    ("flat", "alpha1beta0", "epsilon"),
    ("zbox", "gamma", "epsilon"),
    ("alpha2beta1", "alpha2beta1", "epsilon"),
    ("flat", "gamma", "alpha2beta1"),
    ("alpha1beta0", "alpha2beta1", "gamma"),
]


@pytest.mark.parametrize("choice", RULE_CHOICES, ids=["-".join(c) for c in RULE_CHOICES])
def test_every_rule_matches_numpy(plain_model, choice):
    inputs = np.random.default_rng(1).uniform(-1, 1, (2, 6, 8, 3)).astype("float32")
    result = explain(plain_model, inputs, [0, 2], composite=composite(*choice), low=-1.0,
                     high=1.0)
    bounds = (-np.ones(144), np.ones(144))
    for item, item_class in enumerate([0, 2]):
        expected, logit = numpy_lrp(plain_steps(plain_model), inputs[item], item_class,
                                    numpy_rules(*choice), bounds)
        assert_matches(result.relevance.numpy()[item].reshape(-1), expected)
        assert np.isclose(float(result.scores[item]), logit, rtol=1e-5, atol=1e-6)
        total = result.relevance.numpy()[item].sum()
        score = float(result.scores[item])
        assert np.isclose(float(result.conservation[item]), abs(total - score) / abs(score),
                          rtol=1e-3)


@pytest.mark.parametrize("name, first, conv, dense", [
    ("epsilon-plus-flat", "flat", "alpha1beta0", "epsilon"),
    ("epsilon-gamma-box", "zbox", "gamma", "epsilon"),
    ("epsilon-alpha2-beta1", "alpha2beta1", "alpha2beta1", "epsilon"),
])
def test_composites_with_bounds_through_rescaling(keras, plain_model, name, first, conv, dense):
    """Pixels in [0, 255] rescaled inside the model: the z-box bounds follow the rescaling."""
    inputs = keras.Input((6, 8, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    model = keras.Model(inputs, plain_model(x))
    pixels = np.random.default_rng(2).uniform(0, 255, (1, 6, 8, 3)).astype("float32")
    result = explain(model, pixels, [1], composite=name, epsilon=EPSILON, low=0.0, high=255.0)
    expected, _ = numpy_lrp(plain_steps(plain_model, rescale=True), pixels[0], 1,
                         numpy_rules(first, conv, dense), (-np.ones(144), np.ones(144)))
    assert_matches(result.relevance.numpy().reshape(-1), expected)


def test_max_pooling_as_average(plain_model):
    inputs = np.random.default_rng(3).uniform(-1, 1, (1, 6, 8, 3)).astype("float32")
    result = explain(plain_model, inputs, [1], composite="epsilon", epsilon=EPSILON,
                     max_pool="average")
    steps = [("avgpool", step[1]) if step[0] == "pool" else step
             for step in plain_steps(plain_model)]
    expected, _ = numpy_lrp(steps, inputs[0], 1, numpy_rules("epsilon", "epsilon", "epsilon"))
    assert_matches(result.relevance.numpy().reshape(-1), expected)


def folded(conv_weights, norm_weights, positions, output_axes=(-1,)):
    """A convolution's (kernel, tiled bias) with the BatchNormalization after it folded in;
    `output_axes` is the shape of the kernel's axes indexing the outputs."""
    gamma, beta, mean, variance = norm_weights
    scale = gamma / np.sqrt(variance + 1e-3)
    kernel, bias = conv_weights
    return kernel * scale.reshape(output_axes), np.tile((bias - mean) * scale + beta, positions)


def test_residual_block_with_batch_norm(keras):
    """conv-ReLU, conv-BN (folded), residual Add (split in proportion), ReLU, a BN after
    the ReLU (relevance passes it unchanged), GAP and dense."""
    inputs = keras.Input((5, 5, 3))
    a = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    b = keras.layers.Conv2D(4, 3, padding="same", name="conv2")(a)
    b = keras.layers.BatchNormalization(name="bn")(b)
    x = keras.layers.Activation("relu")(keras.layers.Add()([a, b]))
    x = keras.layers.BatchNormalization(name="bn_after")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = randomised(keras.Model(inputs, keras.layers.Dense(3, name="dense")(x)), 4)
    inputs_ = np.random.default_rng(5).uniform(-1, 1, (1, 5, 5, 3)).astype("float32")
    result = explain(model, inputs_, [2], composite="epsilon-plus-flat", epsilon=EPSILON)

    w = {layer.name: layer.get_weights() for layer in model.layers}
    x0 = inputs_[0].reshape(-1).astype(np.float64)
    m1, mask1, _ = conv_matrix(w["conv1"][0], (5, 5, 3))
    a1 = np.maximum(m1 @ x0 + np.tile(w["conv1"][1], 25), 0)
    kernel2, bias2 = folded(w["conv2"], w["bn"], 25)
    m2, _, _ = conv_matrix(kernel2, (5, 5, 4))
    b2 = m2 @ a1 + bias2
    total = np.maximum(a1 + b2, 0)
    gamma, beta, mean, variance = w["bn_after"]
    scale = gamma / np.sqrt(variance + 1e-3)
    normed = total * np.tile(scale, 25) + np.tile(beta - mean * scale, 25)
    gap = gap_matrix((5, 5, 4))
    pooled = gap @ normed
    logits = w["dense"][0].T @ pooled + w["dense"][1]
    relevance = np.zeros(3)
    relevance[2] = logits[2]
    epsilon = numpy_rule("epsilon")
    relevance = epsilon(w["dense"][0].T, w["dense"][1], pooled, relevance, None, None)
    relevance = epsilon(gap, np.zeros(4), normed, relevance, None, None)  # then BN: unchanged
    denominators = stab(a1 + b2, EPSILON)  # the residual sum splits in proportion
    to_a, to_b = a1 / denominators * relevance, b2 / denominators * relevance
    to_a += numpy_rule("alpha1beta0")(m2, bias2, a1, to_b, None, None)
    expected = numpy_rule("flat")(m1, 0, x0, to_a, mask1, None)
    assert_matches(result.relevance.numpy().reshape(-1), expected)


def test_depthwise_convolution_and_squeeze_excite_gate(keras):
    """conv-ReLU, depthwise conv-BN (folded)-ReLU, a squeeze-excite gate (a constant: the
    signal keeps all relevance), GAP and dense."""
    inputs = keras.Input((5, 6, 2))
    x = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="depthwise")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU()(x)
    gate = keras.layers.GlobalAveragePooling2D(keepdims=True)(x)
    gate = keras.layers.Conv2D(6, 1, activation="sigmoid", name="excite")(gate)
    x = keras.layers.Multiply()([x, gate])
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = randomised(keras.Model(inputs, keras.layers.Dense(3, name="dense")(x)), 6)
    inputs_ = np.random.default_rng(7).uniform(-1, 1, (1, 5, 6, 2)).astype("float32")
    result = explain(model, inputs_, [0], composite="epsilon-alpha2-beta1", epsilon=EPSILON)

    w = {layer.name: layer.get_weights() for layer in model.layers}
    x0 = inputs_[0].reshape(-1).astype(np.float64)
    m1, _, _ = conv_matrix(w["conv"][0], (5, 6, 2))
    a1 = np.maximum(m1 @ x0 + np.tile(w["conv"][1], 30), 0)
    kernel, bias = folded(w["depthwise"], w["bn"], 30, (3, 2))  # (channels, multiplier)
    m2, _, _ = conv_matrix(kernel, (5, 6, 3), depthwise=True)
    a2 = np.maximum(m2 @ a1 + bias, 0)
    squeeze = gap_matrix((5, 6, 6)) @ a2
    excite = 1 / (1 + np.exp(-(w["excite"][0][0, 0].T @ squeeze + w["excite"][1])))
    gated = a2 * np.tile(excite, 30)
    pooled = gap_matrix((5, 6, 6)) @ gated
    logits = w["dense"][0].T @ pooled + w["dense"][1]
    relevance = np.zeros(3)
    relevance[0] = logits[0]
    epsilon, alpha_beta = numpy_rule("epsilon"), numpy_rule("alpha2beta1")
    relevance = epsilon(w["dense"][0].T, w["dense"][1], pooled, relevance, None, None)
    relevance = epsilon(gap_matrix((5, 6, 6)), np.zeros(6), gated, relevance, None, None)
    relevance = alpha_beta(m2, bias, a1, relevance, None, None)
    expected = alpha_beta(m1, np.tile(w["conv"][1], 30), x0, relevance, None, None)
    assert_matches(result.relevance.numpy().reshape(-1), expected)


@pytest.mark.parametrize("name, first", [("epsilon-plus-flat", "flat"),
                                         ("epsilon-alpha2-beta1", "alpha2beta1")])
def test_channels_first(keras, name, first):
    """Convolutions, BatchNormalization (axis 1, folded), max pooling and GAP on
    (channels, height, width) inputs: the relevance, moved to channels last, is the NumPy one.
    alpha2-beta1 on the first convolution splits inputs of both signs along axis 1."""
    inputs = keras.Input((3, 6, 8))
    x = keras.layers.Conv2D(4, 3, padding="same", data_format="channels_first", name="conv1",
                            activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(data_format="channels_first")(x)
    x = keras.layers.Conv2D(5, 3, padding="same", data_format="channels_first", name="conv2")(x)
    x = keras.layers.BatchNormalization(axis=1, name="bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D(data_format="channels_first")(x)
    model = randomised(keras.Model(inputs, keras.layers.Dense(3, name="dense")(x)), 15)
    pixels = np.random.default_rng(16).uniform(-1, 1, (1, 6, 8, 3)).astype("float32")
    result = explain(model, pixels.transpose(0, 3, 1, 2), [1], composite=name, epsilon=EPSILON)
    w = {layer.name: layer.get_weights() for layer in model.layers}
    m1, mask1, shape1 = conv_matrix(w["conv1"][0], (6, 8, 3))
    kernel2, bias2 = folded(w["conv2"], w["bn"], 12)
    m2, mask2, _ = conv_matrix(kernel2, (3, 4, 4))
    steps = [("linear", "conv", m1, np.tile(w["conv1"][1], 48), mask1), ("relu",),
             ("pool", shape1), ("linear", "conv", m2, bias2, mask2), ("relu",),
             ("linear", "pool", gap_matrix((3, 4, 5)), np.zeros(5), None),
             ("linear", "dense", w["dense"][0].T, w["dense"][1], None)]
    conv = "alpha1beta0" if name == "epsilon-plus-flat" else "alpha2beta1"
    expected, _ = numpy_lrp(steps, pixels[0], 1, lambda kind, is_first: numpy_rule(
        first if is_first else conv if kind == "conv" else "epsilon"))
    assert_matches(result.relevance.numpy().transpose(0, 2, 3, 1).reshape(-1), expected)


def test_nested_base_inside_a_classifier(nested_model):
    """The conftest classifier (a functional base inside a Sequential): the base's first
    convolution gets the first-layer rule, GAP and the dense layer outside it theirs."""
    base = nested_model.layers[0]
    w = {layer.name: layer.get_weights() for layer in base.layers[1:]}
    inputs = np.random.default_rng(8).uniform(-1, 1, (1, 16, 16, 3)).astype("float32")
    result = explain(nested_model, inputs, [4], composite="epsilon-plus-flat", epsilon=EPSILON)
    m1, mask1, shape1 = conv_matrix(w["conv1"][0], (16, 16, 3))
    m2, mask2, _ = conv_matrix(w["conv2"][0], (8, 8, 4))
    dense = nested_model.get_layer("logits").get_weights()
    steps = [("linear", "conv", m1, np.tile(w["conv1"][1], 256), mask1), ("relu",),
             ("pool", shape1), ("linear", "conv", m2, np.tile(w["conv2"][1], 64), mask2),
             ("relu",), ("linear", "pool", gap_matrix((8, 8, 6)), np.zeros(6), None),
             ("linear", "dense", dense[0].T, dense[1], None)]
    expected, _ = numpy_lrp(steps, inputs[0], 4, lambda kind, first: numpy_rule(
        "flat" if first else "alpha1beta0" if kind == "conv" else "epsilon"))
    assert_matches(result.relevance.numpy().reshape(-1), expected)


def test_a_nested_model_after_a_convolution_is_not_first(keras):
    """A convolution inside a nested model that follows a convolution is not a first layer."""
    inner_in = keras.Input((4, 4, 2))
    inner = keras.Model(inner_in, keras.layers.Conv2D(3, 3, padding="same",
                                                      activation="relu", name="inner")(inner_in))
    inputs = keras.Input((4, 4, 2))
    x = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="outer")(inputs)
    x = keras.layers.Flatten()(inner(x))
    model = randomised(keras.Model(inputs, keras.layers.Dense(2, name="dense")(x)), 9)
    pixels = np.random.default_rng(10).uniform(-1, 1, (1, 4, 4, 2)).astype("float32")
    result = explain(model, pixels, [1], composite="epsilon-plus-flat", epsilon=EPSILON)
    outer, inner_weights = model.get_layer("outer").get_weights(), inner.layers[1].get_weights()
    m1, mask1, _ = conv_matrix(outer[0], (4, 4, 2))
    m2, mask2, _ = conv_matrix(inner_weights[0], (4, 4, 2))
    dense = model.get_layer("dense").get_weights()
    steps = [("linear", "conv", m1, np.tile(outer[1], 16), mask1), ("relu",),
             ("linear", "conv", m2, np.tile(inner_weights[1], 16), mask2), ("relu",),
             ("linear", "dense", dense[0].T, dense[1], None)]
    expected, _ = numpy_lrp(steps, pixels[0], 1, numpy_rules("flat", "alpha1beta0", "epsilon"))
    assert_matches(result.relevance.numpy().reshape(-1), expected)


def test_flat_on_a_first_dense_layer(keras):
    """A dense first layer takes the flat rule too: each output's relevance split evenly over
    all the inputs."""
    inputs = keras.Input((7,))
    x = keras.layers.Dense(5, activation="relu", name="hidden")(inputs)
    model = randomised(keras.Model(inputs, keras.layers.Dense(3, name="dense")(x)), 15)
    values = np.random.default_rng(16).uniform(-1, 1, (1, 7)).astype("float32")
    result = explain(model, values, [2], composite="epsilon-plus-flat", epsilon=EPSILON)
    (w1, b1), (w2, b2) = (model.get_layer(name).get_weights() for name in ("hidden", "dense"))
    steps = [("linear", "dense", w1.T, b1, np.ones_like(w1.T)), ("relu",),
             ("linear", "dense", w2.T, b2, None)]
    expected, _ = numpy_lrp(steps, values[0], 2, numpy_rules("flat", "alpha1beta0", "epsilon"))
    assert_matches(result.relevance.numpy().reshape(-1), expected)


@pytest.mark.parametrize("data_format, shape, geometry", [
    ("channels_last", (2, 11, 9, 3), {"strides": 2, "padding": "valid"}),
    ("channels_last", (1, 13, 10, 4), {"padding": "same", "dilation_rate": 2}),
    ("channels_first", (1, 3, 12, 7), {"strides": (2, 1), "padding": "same"}),
], ids=["strided", "dilated", "channels-first"])
def test_flat_over_one_channel_equals_ones_convolved_over_all(keras, data_format, shape,
                                                              geometry):
    """The flat rule's one-channel count equals its definition, ones convolved with ones over
    every channel, for strides, dilation, channels-first and odd sizes."""
    import dataclasses

    import tensorflow as tf

    from cnnviz_cli.techniques.lrp import rules
    from cnnviz_cli.techniques.lrp.linear import stages

    layer = keras.layers.Conv2D(5, 3, data_format=data_format, **geometry)
    inputs = tf.constant(np.random.default_rng(17).uniform(-1, 1, shape).astype("float32"))
    layer(inputs)
    linear, _ = stages(layer)[0]

    @tf.function
    def spread(inputs, stack_axis):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = rules.flat(dataclasses.replace(linear, stack_axis=stack_axis), [inputs],
                                 [rules.Facts(deep=False)])
            relevance = tf.random.stateless_normal(tf.shape(outputs), [1, 2])
        return tape.gradient(outputs, inputs, output_gradients=relevance)

    np.testing.assert_allclose(spread(inputs, linear.stack_axis).numpy(),
                               spread(inputs, None).numpy(), rtol=1e-5, atol=1e-6)


def test_conservation_without_biases(keras):
    """Bias-free, epsilon -> 0: the input relevance sums to the explained logit within 1 %."""
    inputs = keras.Input((12, 10, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", use_bias=False)(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(8, 3, activation="relu", use_bias=False)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(4, activation="softmax", use_bias=False)(x)
    model = randomised(keras.Model(inputs, outputs), 11)
    import tensorflow as tf

    from cnnviz_cli.techniques.lrp import LrpOptions, relevance

    pixels = np.random.default_rng(12).uniform(-1, 1, (3, 12, 10, 3)).astype("float32")
    result = relevance(model, pixels, lambda outputs: tf.gather(outputs, [0, 1, 3], axis=1,
                                                                batch_dims=1),
                       LrpOptions("epsilon", epsilon=1e-9))
    totals = result.relevance.numpy().sum(axis=(1, 2, 3))
    scores = result.scores.numpy()
    assert np.all(np.abs(totals - scores) <= 0.01 * np.abs(scores))
    assert np.all(result.conservation.numpy() <= 0.01)


def test_uncovered_layers_fail_in_one_sentence(keras):
    from cnnviz_cli.techniques.lrp import LrpExplainer

    inputs = keras.Input((4, 4, 2))
    x = keras.layers.LayerNormalization(name="norm")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    with pytest.raises(CnnvizError, match=r"'norm' \(LayerNormalization\)"):
        LrpExplainer(model, class_score)
    first, second = keras.Input((4,)), keras.Input((4,))
    product = keras.layers.Multiply(name="product")([first, second])
    with pytest.raises(CnnvizError, match="'product' .*neither input is a gate"):
        LrpExplainer(keras.Model([first, second], product), class_score)


def test_bad_options_fail_in_one_sentence():
    from cnnviz_cli.techniques.lrp import LrpOptions

    with pytest.raises(CnnvizError, match="Unknown LRP composite 'zplus'; choose from"):
        LrpOptions(composite="zplus")
    with pytest.raises(CnnvizError, match="must be positive"):
        LrpOptions(epsilon=0.0)
    with pytest.raises(CnnvizError, match="both bounds"):
        LrpOptions(low=0.0)


def test_z_box_without_bounds_says_so(plain_model):
    with pytest.raises(CnnvizError, match="z-box rule needs the range"):
        explain(plain_model, np.zeros((1, 6, 8, 3), np.float32), [0],
                composite="epsilon-gamma-box")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["VGG16", "ResNet50", "MobileNetV2", "DenseNet121",
                                  "EfficientNetB0"])
def test_keras_applications_are_covered(keras, name):
    """Every layer of these architectures has a rule (weights=None, 32x32, one image); the
    relevance is finite, and not all zero unless the untrained network's logit vanishes (the
    MobileNets' are ~1e-12)."""
    model = getattr(keras.applications, name)(weights=None, input_shape=(32, 32, 3))
    pixels = np.random.default_rng(14).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    result = explain(model, pixels, [7], low=0.0, high=255.0)
    relevance = result.relevance.numpy()
    assert relevance.shape == (1, 32, 32, 3)
    assert np.isfinite(relevance).all()
    assert np.abs(relevance).max() > 0 or abs(float(result.scores[0])) < 1e-6
