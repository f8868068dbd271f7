"""Layer-wise relevance propagation against a bare compiled forward+backward pass of the same
model and batch (no PyTorch here, so no row against zennit or captum).

Run: `python -m benchmarks.lrp` (timing rows).
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks.cam import BATCH, bare_forward_backward, paired_seconds  # noqa: E402

COMPOSITES = ("epsilon-plus-flat", "epsilon")


def _models():
    """(name, model, input size) of the benchmarked models: the demo model and MobileNetV2."""
    import keras

    from cnnviz_cli.models.resolve import ModelRequest, resolve_model

    demo = resolve_model(ModelRequest("demo")).model
    return [("demo", demo, 128), ("mobilenetv2", keras.applications.MobileNetV2(weights=None), 224)]


def measure() -> list[dict]:
    """LRP of the top class with the default and the epsilon composite, per model."""
    return [row for name, model, size in _models() for row in _model_rows(name, model, size)]


def _model_rows(name: str, model, size: int) -> list[dict]:
    import numpy as np
    import tensorflow as tf

    from cnnviz_cli.techniques.lrp import LrpExplainer, LrpOptions

    def top_logit(outputs, classes):
        return tf.gather(outputs, classes, axis=1, batch_dims=1)

    shape = (size, size, 3)
    inputs = np.random.default_rng(0).uniform(0, 1, (BATCH, *shape)).astype("float32")
    classes = tf.constant(model.predict(inputs, verbose=0).argmax(axis=1), tf.int32)
    reference_step = bare_forward_backward(model, shape)
    rows = []
    for composite in COMPOSITES:
        explainer = LrpExplainer(model, top_logit, LrpOptions(composite))
        ours, reference, ratio = paired_seconds(
            lambda e=explainer: e(inputs, classes).relevance.numpy(),
            lambda: reference_step(inputs))
        rows.append({
            "benchmark": f"lrp {composite} {name} {size}px batch {BATCH} (CPU)",
            "ours_s": ours,
            "reference_s": reference,
            "ratio": ratio,
            "note": "reference = compiled forward + gradient of the top logit w.r.t. the input "
            "(no LRP peer without PyTorch); goal <= 1.5",
        })
    return rows


if __name__ == "__main__":
    for row in measure():
        print(row)
