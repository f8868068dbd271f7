"""`cnnviz maximize` speed: 16 filters x 256 steps against 256 bare forward+backward passes.

The reference runs the same sub-model (input to the layer) on a batch of 16 at the same size,
256 times in one compiled loop, with nothing else: no parameterisation, transforms or Adam.
Where tf-keras-vis is installed, its ActivationMaximization does the same work side by side.
Run: `python -m benchmarks.maximize`.
"""

import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks.cam import paired_seconds  # noqa: E402

FILTERS = 16
STEPS = 256
SIZE = 128
GOAL = 1.3


def bare_loop(features, shape: tuple):
    """The reference: STEPS compiled forward+backward passes of one batch, in one loop.

    The step is a function of its own called in the loop, as in `optim.optimize`: inlined into
    the loop's body, TensorFlow's oneDNN build gives about half of the traces its generic max
    pooling gradient (ten times slower per call than oneDNN's), which would flatter the ratio."""
    import tensorflow as tf

    @tf.function(experimental_attributes={"_noinline": True})
    def step(inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            score = tf.reduce_sum(tf.reduce_mean(features(inputs, training=False), [1, 2]))
        return inputs + 0.01 * tape.gradient(score, inputs)

    @tf.function
    def loop(inputs):
        for _ in tf.range(STEPS):
            inputs = step(inputs)
        return inputs

    inputs = tf.random.uniform((FILTERS, *shape))
    return lambda: loop(inputs).numpy()


def measure() -> list[dict]:
    """Our compiled maximisation vs. the bare loop (and tf-keras-vis when installed)."""
    import keras
    import numpy as np

    from cnnviz_cli.models.layers import last_feature_map
    from cnnviz_cli.models.resolve import ModelRequest, resolve_model
    from cnnviz_cli.techniques.maximize import MaximizeConfig, filter_objective, maximize
    from cnnviz_cli.techniques.optim import OptimConfig, Transforms

    resolved = resolve_model(ModelRequest("demo"))
    layer = last_feature_map(resolved.model).path
    shape = (SIZE, SIZE, resolved.channels)
    objective = filter_objective(resolved.model, layer, resolved.preprocess)
    config = MaximizeConfig(
        OptimConfig(steps=STEPS, transforms=Transforms.standard(SIZE), anneal=True)
    )
    filters = np.arange(FILTERS)
    start = time.perf_counter()
    maximize(objective, filters, shape, config)
    first_call = time.perf_counter() - start
    features = keras.Model(resolved.model.inputs, resolved.model.get_layer(layer).output)
    ours, reference, ratio = paired_seconds(
        lambda: maximize(objective, filters, shape, config), bare_loop(features, shape),
        repeats=3, warm_ups=1)
    work = f"{FILTERS} filters x {STEPS} steps, demo {layer}, {SIZE} px"
    rows = [{
        "benchmark": f"maximize: {work}",
        "ours_s": ours,
        "reference_s": reference,
        "ratio": ratio,
        "note": f"reference: {STEPS} bare compiled forward+backward passes of a batch of "
        f"{FILTERS} (goal ratio <= {GOAL}); first call with tracing {first_call:.1f} s",
    }]
    keras_vis = tf_keras_vis_seconds(resolved, layer, shape)
    if keras_vis is not None:
        rows.append({
            "benchmark": f"maximize vs tf-keras-vis: {work}",
            "ours_s": ours,
            "reference_s": keras_vis,
            "ratio": ours / keras_vis,
            "note": "tf-keras-vis ActivationMaximization, its default transforms and "
            "regularisers, eager step loop",
        })
    return rows


def tf_keras_vis_seconds(resolved, layer: str, shape: tuple) -> float | None:
    """tf-keras-vis doing the same work, or None where it is not installed."""
    try:
        from tf_keras_vis.activation_maximization import ActivationMaximization
        from tf_keras_vis.utils.model_modifiers import ExtractIntermediateLayer
        from tf_keras_vis.utils.scores import CategoricalScore
    except ImportError:
        return None
    import numpy as np

    visualizer = ActivationMaximization(
        resolved.model, model_modifier=ExtractIntermediateLayer(layer), clone=True
    )
    seeds = np.random.default_rng(0).uniform(0, 1, (FILTERS, *shape)).astype("float32")
    score = CategoricalScore(list(range(FILTERS)))
    start = time.perf_counter()  # the demo model takes pixels in [0, 1]
    visualizer(score, seed_input=seeds, steps=STEPS, input_range=(0.0, 1.0))
    return time.perf_counter() - start


if __name__ == "__main__":
    for row in measure():
        print(f"{row['benchmark']}: ours {row['ours_s']:.2f} s, reference "
              f"{row['reference_s']:.2f} s, ratio {row['ratio']:.2f} ({row['note']})")
