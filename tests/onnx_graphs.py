"""Helpers of the ONNX tests: graphs written with onnx.helper, run by onnxruntime and by the
translation."""

import numpy as np

onnx = __import__("pytest").importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def graph_model(nodes, input_shape, constants=None, outputs=("y",), opset=17, name="graph"):
    """A model of `nodes` (onnx.helper nodes) with float input `x` of `input_shape` (None or a
    string: a free dimension) and the initialisers `constants`."""
    constants = constants or {}
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))],
        [helper.make_empty_tensor_value_info(output) for output in outputs],
        [numpy_helper.from_array(np.asarray(value), key) for key, value in constants.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def onnxruntime_outputs(model, inputs: np.ndarray) -> list[np.ndarray]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
    return session.run(None, {"x": inputs})


def translated_outputs(model, inputs: np.ndarray, channels_first: bool, size=None):
    """The translated model's outputs in file order (NCHW), and the translation."""
    from cnnviz_cli.models.onnx import translate

    dims = [dim.dim_value if dim.HasField("dim_value") else None
            for dim in model.graph.input[0].type.tensor_type.shape.dim][1:]
    image_shape = (dims[1], dims[2], dims[0]) if channels_first else tuple(dims)
    translation = translate(model, image_shape, channels_first, size)
    feed = np.transpose(inputs, (0, 2, 3, 1)) if channels_first else inputs
    results = translation.model(feed)
    results = results if isinstance(results, list | tuple) else [results]
    return [np.transpose(np.asarray(result), (0, 3, 1, 2)) if layout == "nhwc"
            else np.asarray(result)
            for result, layout in zip(results, translation.layouts, strict=True)], translation


def assert_close(ours, theirs, tolerance=1e-4):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    scale = max(1.0, float(np.abs(theirs).max())) if theirs.size else 1.0
    assert np.abs(ours - theirs).max(initial=0) <= tolerance * scale, \
        np.abs(ours - theirs).max()


class Twin:
    """One network written twice with the same weights: ONNX nodes in the shapes PyTorch's
    exporter writes (NCHW, Conv + BatchNormalization, Shape chains) and a Keras model
    (channels-last) whose layers carry the ONNX node output names."""

    def __init__(self, size: int = 16, batch: str | int = "N", free_size: bool = True,
                 seed: int = 0, opset: int = 17, channels_last: bool = False):
        import keras

        self.size, self.batch, self.opset, self.free_size = size, batch, opset, free_size
        self.channels_last = channels_last
        self.rng = np.random.default_rng(seed)
        self.nodes, self.constants = [], {}
        side = None if free_size else size
        self.inputs = keras.Input((side, side, 3), name="image")
        self.onnx, self.keras, self.channels = "x", self.inputs, 3
        self.last_conv = None
        if channels_last:  # a TensorFlow exporter's NHWC input, transposed to NCHW first
            self.onnx = self._node("Transpose", ["x"], "x_nchw", perm=[0, 3, 1, 2])

    def _weights(self, *shape, scale=None):
        scale = scale or np.sqrt(2.0 / np.prod(shape[1:]))
        return (self.rng.normal(size=shape) * scale).astype(np.float32)

    def _constant(self, name, value):
        self.constants[name] = np.asarray(value)
        return name

    def _node(self, op_type, inputs, name, **attributes):
        self.nodes.append(helper.make_node(op_type, inputs, [name], **attributes))
        return name

    def step(self, onnx_name, keras_tensor, channels=None):
        self.onnx, self.keras = onnx_name, keras_tensor
        self.channels = channels or self.channels
        self.last_conv = None  # right after a Conv: (layer maker, input, kernel, bias, axes)

    def conv(self, name, out, kernel=3, stride=1, group=1, bias=True, pad=None):
        import keras

        pad = kernel // 2 if pad is None else pad
        weight = self._weights(out, self.channels // group, kernel, kernel)
        inputs = [self.onnx, self._constant(f"{name}.weight", weight)]
        offset = self._weights(out, scale=0.1) if bias else None
        if bias:
            inputs.append(self._constant(f"{name}.bias", offset))
        node = self._node("Conv", inputs, name, kernel_shape=[kernel, kernel], group=group,
                          pads=[pad] * 4, strides=[stride, stride])
        tensor = self.keras
        if stride > 1 and pad:
            tensor = keras.layers.ZeroPadding2D(pad, name=f"{name}_pad")(tensor)
        padding = "same" if stride == 1 and pad else "valid"
        if group > 1:
            def layer(name, bias):
                return keras.layers.DepthwiseConv2D(kernel, stride, padding, use_bias=bias,
                                                    name=name)
            kernel_weights = weight.reshape(self.channels, 1, kernel, kernel).transpose(2, 3, 0, 1)
        else:
            def layer(name, bias):
                return keras.layers.Conv2D(out, kernel, stride, padding, use_bias=bias, name=name)
            kernel_weights = weight.transpose(2, 3, 1, 0)
        conv = layer(name, bias)
        output = conv(tensor)
        conv.set_weights([kernel_weights] + ([offset] if bias else []))
        self.step(node, output, out)
        by_channel = (out, 1) if group > 1 else (out,)  # the output channels' kernel axes
        self.last_conv = (layer, tensor, kernel_weights, 0.0 if offset is None else offset,
                          by_channel)

    def batch_norm(self, name):
        """A BatchNormalization; right after a Conv, the Keras twin is the Conv with the
        normalisation folded into its weights (as the translation, and onnxruntime, do)."""
        import keras

        stats = [self._weights(self.channels, scale=0.3) + shift for shift in (1, 0, 0, 0)]
        stats[3] = np.abs(stats[3]) + 0.5
        names = [self._constant(f"{name}.{part}", value) for part, value in
                 zip(("weight", "bias", "mean", "var"), stats, strict=True)]
        node = self._node("BatchNormalization", [self.onnx, *names], name, epsilon=1e-5)
        if self.last_conv is None:
            layer = keras.layers.BatchNormalization(epsilon=1e-5, name=name)
            output = layer(self.keras)
            layer.set_weights(stats)
            self.step(node, output)
            return
        make, tensor, kernel, offset, by_channel = self.last_conv
        gamma, beta, mean, variance = stats
        scale = gamma / np.sqrt(variance + 1e-5)
        folded = make(name, True)
        output = folded(tensor)
        folded.set_weights([kernel * scale.reshape(by_channel), (offset - mean) * scale + beta])
        self.step(node, output)

    def relu(self, name):
        import keras

        self.step(self._node("Relu", [self.onnx], name), keras.layers.ReLU(name=name)(self.keras))

    def add(self, name, other):
        import keras

        node = self._node("Add", [self.onnx, other[0]], name)
        self.step(node, keras.layers.Add(name=name)([self.keras, other[1]]))

    def max_pool(self, name):
        import keras

        node = self._node("MaxPool", [self.onnx], name, kernel_shape=[2, 2], strides=[2, 2])
        self.step(node, keras.layers.MaxPooling2D(2, name=name)(self.keras))

    def upsample(self, name):
        import keras

        node = self._node("Resize", [self.onnx, "", self._constant(
            f"{name}.scales", np.array([1, 1, 2, 2], np.float32))], name, mode="nearest",
            coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        self.step(node, keras.layers.UpSampling2D(2, name=name)(self.keras))

    def concat(self, name, other, channels):
        import keras

        node = self._node("Concat", [other[0], self.onnx], name, axis=1)
        self.step(node, keras.layers.Concatenate(name=name)([other[1], self.keras]),
                  channels + self.channels)

    def batch_shape(self, name, rest):
        """The Shape -> Gather -> Unsqueeze -> Concat chain PyTorch writes for (batch, *rest)."""
        shape = self._node("Shape", [self.onnx], f"{name}.shape")
        batch = self._node("Gather", [shape, self._constant(f"{name}.zero", np.array(0))],
                           f"{name}.batch", axis=0)
        batch = self._node("Unsqueeze", [batch, self._constant(f"{name}.axes", np.array([0]))],
                           f"{name}.batch1")
        return self._node("Concat", [batch, self._constant(f"{name}.rest", np.array(rest))],
                          f"{name}.target", axis=0)

    def activate(self, activation):
        """A final Softmax over the channels (axis 1) or Sigmoid, or (None) nothing."""
        import keras

        if activation == "softmax":
            self.step(self._node("Softmax", [self.onnx], "probabilities", axis=1),
                      keras.layers.Softmax(name="probabilities")(self.keras))
        elif activation == "sigmoid":
            self.step(self._node("Sigmoid", [self.onnx], "probabilities"),
                      keras.layers.Activation("sigmoid", name="probabilities")(self.keras))

    def classifier(self, classes, reshape=False, activation="softmax"):
        """GlobalAveragePool, Flatten (or x.view(x.size(0), -1)), Gemm, then `activation`."""
        import keras

        pooled = self._node("GlobalAveragePool", [self.onnx], "pool")
        flat = (self._node("Reshape", [pooled, self.batch_shape("view", [-1])], "flat")
                if reshape else self._node("Flatten", [pooled], "flat"))
        weight, bias = self._weights(classes, self.channels), self._weights(classes, scale=0.1)
        logits = self._node("Gemm", [flat, self._constant("fc.weight", weight),
                                     self._constant("fc.bias", bias)], "logits", transB=1)
        dense = keras.layers.Dense(classes, name="logits")
        tensor = dense(keras.layers.GlobalAveragePooling2D(name="pool")(self.keras))
        dense.set_weights([weight.T, bias])
        self.step(logits, tensor)
        self.activate(activation)

    def models(self, name="twin"):
        """(the ONNX ModelProto, the Keras model)."""
        import keras

        sides = ("height", "width") if self.free_size else (self.size,) * 2
        shape = [self.batch, *sides, 3] if self.channels_last else [self.batch, 3, *sides]
        proto = graph_model(self.nodes, shape, self.constants, (self.onnx,), self.opset, name)
        return proto, keras.Model(self.inputs, self.keras, name=name)


def residual_cnn(width=8, classes=5, size=16, blocks=1, reshape=False, batch="N",
                 free_size=True):
    """Conv + BatchNorm + ReLU stem, residual blocks, a depthwise and a pointwise Conv, and a
    GlobalAveragePool, Flatten + Gemm, Softmax head."""
    twin = Twin(size, batch, free_size)
    twin.conv("stem", width, bias=False)
    twin.batch_norm("stem_bn")
    twin.relu("stem_relu")
    for block in range(1, blocks + 1):
        shortcut = (twin.onnx, twin.keras)
        twin.conv(f"block{block}_conv1", width, bias=False)
        twin.batch_norm(f"block{block}_bn1")
        twin.relu(f"block{block}_relu1")
        twin.conv(f"block{block}_conv2", width, bias=False)
        twin.batch_norm(f"block{block}_bn2")
        twin.add(f"block{block}_add", shortcut)
        twin.relu(f"block{block}_out")
        twin.max_pool(f"block{block}_pool")
    twin.conv("depthwise", width, group=width)
    twin.relu("depthwise_relu")
    twin.conv("pointwise", 2 * width, kernel=1)
    twin.relu("pointwise_relu")
    twin.classifier(classes, reshape)
    return twin.models("residual_cnn")


def decoder(classes=3, size=16):
    """A U-Net-style decoder: full-size skip features, a stride-2 Conv, a nearest Resize back
    up, Concat with the skip, a 1x1 Conv to per-pixel class logits."""
    twin = Twin(size)
    twin.conv("skip", 4)
    twin.relu("skip_relu")
    skip = (twin.onnx, twin.keras)
    twin.conv("down", 8, stride=2)
    twin.relu("down_relu")
    twin.conv("middle", 8)
    twin.relu("middle_relu")
    twin.upsample("up")
    twin.concat("merged", skip, 4)
    twin.conv("classes", classes, kernel=1)
    return twin.models("decoder")


def vit(size=16, patch=4, dim=16, heads=2, blocks=2, classes=5, channels_last=False,
        batch="N"):
    """A two-block ViT as PyTorch exports it: a patch Conv, Reshape + Transpose to tokens, a
    class token (Expand of a Shape chain, Concat), position embeddings, and pre-norm blocks of
    LayerNormalization, MatMul attention (Reshape, Transpose, Gather, Softmax) and an
    Erf-written GELU MLP, then the class token's Gemm head."""
    import keras
    from keras import ops

    twin = Twin(size, batch, free_size=False, channels_last=channels_last)
    twin.conv("patches", dim, kernel=patch, stride=patch, pad=0)
    tokens = (size // patch) ** 2
    flat = twin._node("Reshape", [twin.onnx, twin.batch_shape("flatten", [dim, tokens])],
                      "patch_flat")
    twin.step(twin._node("Transpose", [flat], "tokens", perm=[0, 2, 1]),
              ops.reshape(twin.keras, (-1, tokens, dim)))
    token = twin._weights(1, 1, dim, scale=0.5)
    expanded = twin._node("Expand", [twin._constant("class_token", token),
                                     twin.batch_shape("expand", [1, dim])], "class_expanded")
    joined = twin._node("Concat", [expanded, twin.onnx], "with_class", axis=1)
    position = twin._weights(1, tokens + 1, dim, scale=0.5)
    embedded = twin._node("Add", [joined, twin._constant("position", position)], "embedded")
    tensor = ops.concatenate([ops.zeros_like(twin.keras[:, :1, :]) + token, twin.keras], axis=1)
    twin.step(embedded, tensor + position)
    for block in range(1, blocks + 1):
        _encoder_block(twin, f"block{block}", tokens + 1, dim, heads)
    _layer_norm(twin, "final_ln")
    picked = twin._node("Gather", [twin.onnx, twin._constant("first", np.array(0))],
                        "class_features", axis=1)
    weight, bias = twin._weights(classes, dim), twin._weights(classes, scale=0.1)
    logits = twin._node("Gemm", [picked, twin._constant("head.weight", weight),
                                 twin._constant("head.bias", bias)], "logits", transB=1)
    dense = keras.layers.Dense(classes, name="logits")
    output = dense(twin.keras[:, 0, :])
    dense.set_weights([weight.T, bias])
    twin.step(twin._node("Softmax", [logits], "probabilities", axis=-1),
              keras.layers.Softmax(name="probabilities")(output))
    return twin.models("vit")


def patch_tokens(size=16, patch=4, dim=8, classes=3, free_size=True, channels_last=False,
                 batch="N"):
    """A ViT-like model of any size (no position embeddings): a patch Conv, Reshape +
    Transpose to as many tokens as the input has patches, a MatMul token mixer with ReLU, the
    tokens' ReduceMean, and a MatMul classifier with Softmax."""
    import keras

    twin = Twin(size, batch, free_size, channels_last=channels_last)
    twin.conv("patches", dim, kernel=patch, stride=patch, pad=0)
    flat = twin._node("Reshape", [twin.onnx, twin.batch_shape("flatten", [dim, -1])],
                      "patch_flat")
    twin.step(twin._node("Transpose", [flat], "tokens", perm=[0, 2, 1]),
              keras.layers.Reshape((-1, dim), name="tokens")(twin.keras))
    _linear(twin, "mixer", dim)
    twin.relu("mixer_relu")
    twin.step(twin._node("ReduceMean", [twin.onnx], "pooled", axes=[1], keepdims=0),
              keras.layers.GlobalAveragePooling1D(name="pooled")(twin.keras))
    _linear(twin, "logits", classes)
    twin.activate("softmax")
    return twin.models("patch_tokens")


def _layer_norm(twin, name):
    import keras

    scale, shift = twin._weights(twin_dim(twin), scale=0.2) + 1, twin._weights(twin_dim(twin),
                                                                               scale=0.2)
    node = twin._node("LayerNormalization", [twin.onnx, twin._constant(f"{name}.weight", scale),
                                             twin._constant(f"{name}.bias", shift)], name,
                      axis=-1, epsilon=1e-6)
    layer = keras.layers.LayerNormalization(epsilon=1e-6, name=name)
    output = layer(twin.keras)
    layer.set_weights([scale, shift])
    twin.step(node, output)


def twin_dim(twin):
    return int(twin.keras.shape[-1])


def _linear(twin, name, units):
    import keras

    weight, bias = twin._weights(twin_dim(twin), units), twin._weights(units, scale=0.1)
    product = twin._node("MatMul", [twin.onnx, twin._constant(f"{name}.weight", weight)],
                         f"{name}_matmul")
    node = twin._node("Add", [product, twin._constant(f"{name}.bias", bias)], name)
    layer = keras.layers.Dense(units, name=name)
    output = layer(twin.keras)
    layer.set_weights([weight, bias])
    twin.step(node, output)


def _encoder_block(twin, name, tokens, dim, heads):
    import keras
    from keras import ops

    node = twin._node
    size = dim // heads
    residual = (twin.onnx, twin.keras)
    _layer_norm(twin, f"{name}_ln1")
    _linear(twin, f"{name}_qkv", 3 * dim)
    split = node("Reshape", [twin.onnx, twin.batch_shape(f"{name}_heads",
                                                         [tokens, 3, heads, size])],
                 f"{name}_split")
    moved = node("Transpose", [split], f"{name}_moved", perm=[2, 0, 3, 1, 4])
    parts = [node("Gather", [moved, twin._constant(f"{name}_{i}", np.array(i))], f"{name}_{p}",
                  axis=0) for i, p in enumerate("qkv")]
    keys = node("Transpose", [parts[1]], f"{name}_keys", perm=[0, 1, 3, 2])
    scores = node("MatMul", [parts[0], keys], f"{name}_scores")
    scaled = node("Mul", [scores, twin._constant(f"{name}_scale",
                                                 np.array(size ** -0.5, np.float32))],
                  f"{name}_scaled")
    weights = node("Softmax", [scaled], f"{name}_attention", axis=-1)
    context = node("MatMul", [weights, parts[2]], f"{name}_context")
    context = node("Transpose", [context], f"{name}_context_tokens", perm=[0, 2, 1, 3])
    merged = node("Reshape", [context, twin.batch_shape(f"{name}_merge", [tokens, dim])],
                  f"{name}_merged")
    moved = ops.transpose(ops.reshape(twin.keras, (-1, tokens, 3, heads, size)), (2, 0, 3, 1, 4))
    attention = ops.softmax(ops.matmul(moved[0], ops.transpose(moved[1], (0, 1, 3, 2)))
                            * size ** -0.5, axis=-1)
    together = ops.reshape(ops.transpose(ops.matmul(attention, moved[2]), (0, 2, 1, 3)),
                           (-1, tokens, dim))
    twin.step(merged, together)
    _linear(twin, f"{name}_projection", dim)
    twin.add(f"{name}_attention_out", residual)
    residual = (twin.onnx, twin.keras)
    _layer_norm(twin, f"{name}_ln2")
    _linear(twin, f"{name}_fc1", 2 * dim)
    halved = node("Div", [twin.onnx, twin._constant(f"{name}_root2", np.array(2 ** 0.5,
                                                                             np.float32))],
                  f"{name}_halved")
    erf = node("Erf", [halved], f"{name}_erf")
    plus = node("Add", [erf, twin._constant(f"{name}_one", np.array(1, np.float32))],
                f"{name}_plus")
    gated = node("Mul", [twin.onnx, plus], f"{name}_gated")
    gelu = node("Mul", [gated, twin._constant(f"{name}_half", np.array(0.5, np.float32))],
                f"{name}_gelu")
    twin.step(gelu, keras.activations.gelu(twin.keras, approximate=False))
    _linear(twin, f"{name}_fc2", dim)
    twin.add(f"{name}_out", residual)
