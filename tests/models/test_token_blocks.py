"""A ViT-shaped model whose transformer blocks live in one custom layer (keras-hub's ViTEncoder
style): its blocks are listed and tapped as `encoder/block_N`, and `-l auto` explains the input
of the last block, where the patch tokens still carry the class's gradient."""

import numpy as np
import pytest

SIDE, PATCH, WIDTH = 32, 8, 4
EVIDENCE = (1, 2)  # the (row, column) of the red patch on the 4x4 patch grid


@pytest.fixture(scope="module")
def vit(keras):
    layers = keras.layers

    class Block(layers.Layer):
        """Pre-norm transformer block: attention and an MLP, each with a residual sum."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.norm_1 = layers.LayerNormalization(name="norm_1")
            self.attention = layers.MultiHeadAttention(1, WIDTH, name="attention")
            self.norm_2 = layers.LayerNormalization(name="norm_2")
            self.mlp = layers.Dense(WIDTH, name="mlp")

        def call(self, x):
            y = self.norm_1(x)
            x = x + self.attention(y, y)
            return x + self.mlp(self.norm_2(x))

    class Encoder(layers.Layer):
        """Its blocks, then a final normalisation, called in sequence."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.blocks = [Block(name=f"block_{number}") for number in range(2)]
            self.final_norm = layers.LayerNormalization(name="final_norm")

        def call(self, x):
            for block in self.blocks:
                x = block(x)
            return self.final_norm(x)

    class ClassToken(layers.Layer):
        def build(self, shape):
            self.token = self.add_weight(shape=(1, 1, shape[-1]), initializer="zeros")

        def call(self, x):
            token = keras.ops.broadcast_to(self.token, (keras.ops.shape(x)[0], 1, x.shape[-1]))
            return keras.ops.concatenate([token, x], axis=1)

    inputs = keras.Input((SIDE, SIDE, 3))
    x = layers.Conv2D(WIDTH, PATCH, strides=PATCH, name="patch_embedding")(inputs)
    x = ClassToken(name="class_token")(layers.Reshape((-1, WIDTH), name="patches")(x))
    x = Encoder(name="encoder")(x)
    model = keras.Model(inputs, layers.Dense(2, activation="softmax", name="head")(x[:, 0]))
    kernel = np.zeros((PATCH, PATCH, 3, WIDTH), np.float32)
    kernel[:, :, 0, 0] = 4 / (PATCH * PATCH * 255)  # channel 0: the patch's redness
    model.get_layer("patch_embedding").set_weights(
        [kernel, np.array([0.0, 1.0, -1.0, 0.5], np.float32)])
    rng = np.random.default_rng(0)
    encoder = model.get_layer("encoder")
    for block in encoder.blocks:  # uniform attention (no queries, keys), values passed on
        weights = [np.zeros_like(w) for w in block.attention.get_weights()]
        weights[4] = np.eye(WIDTH, dtype=np.float32)[:, None, :]  # value kernel
        weights[6] = np.eye(WIDTH, dtype=np.float32)[None]  # output kernel
        block.attention.set_weights(weights)
        block.mlp.set_weights([0.1 * rng.normal(size=(WIDTH, WIDTH)).astype(np.float32),
                               np.zeros(WIDTH, np.float32)])
    head = np.zeros((WIDTH, 2), np.float32)
    head[0] = [-3.0, 3.0]  # class 1: red evidence somewhere
    model.get_layer("head").set_weights([head, np.zeros(2, np.float32)])
    return model


@pytest.fixture(scope="module")
def evidence_image():
    image = np.full((SIDE, SIDE, 3), 40, np.uint8)
    row, column = EVIDENCE
    image[row * PATCH:(row + 1) * PATCH, column * PATCH:(column + 1) * PATCH] = (255, 0, 0)
    return image


def test_blocks_inside_a_custom_layer_are_listed(vit):
    from cnnviz_cli.models.layers import find_feature_map, iter_layers

    paths = [info.path for info in iter_layers(vit)]
    assert {"encoder/block_0", "encoder/block_1", "encoder/final_norm"} <= set(paths)
    assert "encoder/block_1/norm_1" in paths  # a block's own sub-layers, weights only
    assert find_feature_map(vit, "encoder/block_0").output_shape == (None, 17, WIDTH)


def test_auto_gradcam_peaks_on_the_evidence_patch(vit, evidence_image):
    import cnnviz_cli as api
    from cnnviz_cli.models.layers import last_feature_map

    assert last_feature_map(vit).path == "encoder/block_0"  # the last block's input
    result = api.cam(vit, [evidence_image], classes=[1], methods=["gradcam"])
    heatmap = result.maps[0]["gradcam"]
    assert heatmap.max() > 0
    grid = SIDE // PATCH  # the map is at the token grid's resolution or finer
    peak = np.unravel_index(heatmap.argmax(), heatmap.shape)
    assert tuple(int(p * grid // n) for p, n in zip(peak, heatmap.shape, strict=True)) == EVIDENCE



def test_blank_map_after_the_last_block_is_a_warning(vit, evidence_image):
    import cnnviz_cli as api
    from cnnviz_cli.api.session import LISTENER

    heard: list[str] = []
    token = LISTENER.set(heard.append)
    try:
        result = api.cam(vit, [evidence_image], classes=[1], methods=["gradcam"],
                         layer="encoder/block_1")
    finally:
        LISTENER.reset(token)
    assert not result.maps[0]["gradcam"].any()  # only the class token reaches the head
    assert len(heard) == 1 and "all zero at layer encoder/block_1" in heard[0]
    assert heard[0].endswith("try -l encoder/block_0.")


def test_filters_default_is_the_patch_convolution_inside_a_layer(keras):
    import cnnviz_cli as api

    class Patching(keras.layers.Layer):  # keras-hub style: the convolution is a sub-layer
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.conv = keras.layers.Conv2D(WIDTH, PATCH, strides=PATCH, name="conv")
            self.position = keras.layers.Embedding(16, WIDTH, name="position")

        def call(self, x):
            tokens = keras.ops.reshape(self.conv(x), (-1, 16, WIDTH))
            return tokens + self.position(keras.ops.arange(16))

    inputs = keras.Input((SIDE, SIDE, 3))
    x = Patching(name="patching")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x[:, 0]))
    result = api.filters(model)
    assert result.items[0].layer == "patching/conv" and result.kernels.shape[0] == WIDTH
