"""`cam --metric road` and `--metric randomisation` against the bare passes they need.

ROAD runs 18 imputed copies of every item through the model (9 fractions, most and least
relevant first): its reference is a bare compiled forward pass over as many inputs, in passes of
32. Randomisation explains the items once per step of the cascade with a re-initialised copy of
the model: its reference is one bare compiled forward+backward pass per step.

Run: `python -m benchmarks.trust`.
"""

import math
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks.cam import BATCH, bare_forward_backward, paired_seconds  # noqa: E402

PASS = 32


def bare_forward(model, input_shape: tuple):
    """A compiled forward pass of a batch, the reference of work that needs no gradient."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec((None, *input_shape), tf.float32)])
    def step(inputs):
        return model(inputs, training=False)

    return lambda inputs: step(inputs).numpy()


def measure() -> list[dict]:
    import numpy as np

    from cnnviz_cli.demo.shapes import make_pairs
    from cnnviz_cli.models.layers import last_feature_map
    from cnnviz_cli.models.resolve import ModelRequest, resolve_model
    from cnnviz_cli.techniques.cam import CamExplainer, CamOptions, Targets
    from cnnviz_cli.techniques.trust import ROAD_FRACTIONS, TrustMetrics, road

    resolved = resolve_model(ModelRequest("demo"))
    model, shape = resolved.model, (128, 128, 3)
    inputs = resolved.prepare(make_pairs(BATCH, 128, 0)[0])
    explainer = CamExplainer(model, last_feature_map(model).path, shape)
    options = CamOptions(batch_size=PASS)
    cam_batch = explainer(inputs, Targets(), ["gradcam"], options)
    maps = cam_batch.maps["gradcam"]
    where = f"gradcam maps, demo 128px, batch {BATCH} (CPU)"

    copies = BATCH * 2 * len(ROAD_FRACTIONS)
    forward = bare_forward(model, shape)
    chunk = np.repeat(inputs, math.ceil(PASS / BATCH), axis=0)[:PASS]
    ours, reference, ratio = paired_seconds(
        lambda: road(explainer, inputs, cam_batch.classes, maps, PASS),
        lambda: [forward(chunk) for _ in range(math.ceil(copies / PASS))], repeats=5)
    rows = [{
        "benchmark": f"cam --metric road: {where}",
        "ours_s": ours, "reference_s": reference, "ratio": ratio,
        "note": f"{copies} imputed copies in passes of {PASS}; reference = as many bare compiled "
        "forward passes; goal <= 1.3",
    }]

    trust = TrustMetrics(explainer, ["randomisation"], options, shape)
    steps = len(trust.prepared["randomisation"].steps)
    backward = bare_forward_backward(model, shape)
    ours, reference, ratio = paired_seconds(
        lambda: trust(inputs, cam_batch),
        lambda: [backward(inputs) for _ in range(steps)], repeats=3)
    rows.append({
        "benchmark": f"cam --metric randomisation: {where}",
        "ours_s": ours, "reference_s": reference, "ratio": ratio,
        "note": f"{steps} cascade steps, weights assigned to one compiled copy; reference = "
        f"{steps} bare compiled forward+backward passes; goal <= 1.3",
    })
    return rows


if __name__ == "__main__":
    for row in measure():
        print(row)
