"""RISE speed against bare forward passes of the same model over as many inputs.

Run: `python -m benchmarks.perturbation`.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MASKS = 2000
BATCH = 64
REPEATS = 3


def bare_forward_passes(model, inputs, count: int, batch_size: int):
    """The reference: `count` inputs through the model in one compiled loop of batches."""
    import tensorflow as tf

    batch = tf.constant(inputs[:1].repeat(batch_size, axis=0))
    passes = tf.constant(-(-count // batch_size))

    @tf.function
    def run(passes):
        total = tf.constant(0.0)
        for _ in tf.range(passes):
            total += tf.reduce_sum(model(batch, training=False))
        return total

    return lambda: run(passes).numpy()


def measure() -> list[dict]:
    """RISE with 2000 masks on one demo-model image vs. 2000 bare forward passes."""
    import numpy as np

    from benchmarks.cam import paired_seconds
    from cnnviz_cli.models.resolve import ModelRequest, resolve_model
    from cnnviz_cli.techniques.cam import CamExplainer, CamOptions, Targets

    model, size = resolve_model(ModelRequest("demo")).model, 128
    inputs = np.random.default_rng(0).uniform(0, 1, (1, size, size, 3)).astype("float32")
    explainer = CamExplainer(model, None, (size, size, 3))
    options = CamOptions(masks=MASKS, batch_size=BATCH)
    ours, reference, ratio = paired_seconds(
        lambda: explainer(inputs, Targets(), ["rise"], options),
        bare_forward_passes(model, inputs, MASKS, BATCH), repeats=REPEATS)
    return [{
        "benchmark": f"cam rise demo {size}px, {MASKS} masks, batch {BATCH} (CPU)",
        "ours_s": ours,
        "reference_s": reference,
        "ratio": ratio,
        "note": f"reference = {MASKS} bare forward passes of the model in one compiled loop of "
        f"batches of {BATCH}; goal <= 1.2",
    }]


if __name__ == "__main__":
    for row in measure():
        print(row)
