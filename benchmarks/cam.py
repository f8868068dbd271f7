"""`cnnviz cam` speed against a bare compiled forward+backward pass of the same model and batch.

Run: `python -m benchmarks.cam` (timing rows) or `python -m benchmarks.cam pointing` (the
pointing game of every method on generated two-shape images of the demo model).
"""

import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

BATCH = 8
REPEATS = 7


def median_seconds(function, repeats: int = REPEATS) -> float:
    """Median wall time of `function()` after two warm-up calls (tracing, caches)."""
    function()
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def paired_seconds(ours, reference, repeats: int = REPEATS,
                   warm_ups: int = 2) -> tuple[float, float, float]:
    """(ours, reference, ratio): the median wall times of `ours()` and `reference()` timed in
    turns after `warm_ups` calls each, and the median of the turns' ratios, which a machine
    whose speed drifts during the run moves less than a ratio of medians timed apart."""
    for _ in range(warm_ups):
        ours()
        reference()
    turns = []
    for _ in range(repeats):
        turn = []
        for function in (ours, reference):
            start = time.perf_counter()
            function()
            turn.append(time.perf_counter() - start)
        turns.append(turn)
    mine, theirs = zip(*turns, strict=True)
    return (statistics.median(mine), statistics.median(theirs),
            statistics.median(a / b for a, b in turns))


def bare_forward_backward(model, input_shape: tuple):
    """The reference: compiled forward pass and gradient of the top logit w.r.t. the input."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec((None, *input_shape), tf.float32)])
    def step(inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            score = tf.reduce_max(model(inputs, training=False), axis=1)
        return tape.gradient(score, inputs)

    return lambda inputs: step(inputs).numpy()


def _models():
    """(name, model, input size) of the benchmarked models: the demo model and MobileNetV2."""
    import keras

    from cnnviz_cli.models.resolve import ModelRequest, resolve_model

    demo = resolve_model(ModelRequest("demo")).model
    mobilenet = keras.applications.MobileNetV2(weights=None)
    return [("demo", demo, 128), ("mobilenetv2", mobilenet, 224)]


def measure() -> list[dict]:
    """GradCAM (and ScoreCAM on the demo model) vs. one bare forward+backward pass and, where
    it is installed, vs. tf-keras-vis doing the same work."""
    rows = []
    for name, model, size in _models():
        methods = ["gradcam", "gradcam++", "faster-scorecam", "scorecam"] if name == "demo" \
            else ["gradcam"]
        rows += _model_rows(name, model, size, methods)
    return rows


def _model_rows(name: str, model, size: int, methods: list[str]) -> list[dict]:
    import numpy as np

    from cnnviz_cli.models.layers import last_feature_map
    from cnnviz_cli.techniques.cam import CamExplainer, CamOptions, Targets

    shape = (size, size, 3)
    inputs = np.random.default_rng(0).uniform(0, 1, (BATCH, *shape)).astype("float32")
    layer = last_feature_map(model)
    explainer = CamExplainer(model, layer.path, shape)
    reference_step = bare_forward_backward(model, shape)
    options, rows = CamOptions(batch_size=32), []
    peers = tf_keras_vis_runs(model, layer.path, inputs) if name == "demo" else {}
    for method in methods:
        explain = lambda m=method: explainer(inputs, Targets(), [m], options)  # noqa: E731
        ours, reference, ratio = paired_seconds(
            explain, lambda: reference_step(inputs), 3 if "scorecam" in method else REPEATS)
        goal = {"gradcam": "goal <= 1.25", "gradcam++": "the same compiled core as GradCAM"}.get(
            method, "masked inputs in passes of 32")
        work = f"{method} {name} {size}px batch {BATCH} (CPU)"
        rows.append({
            "benchmark": f"cam {work}",
            "ours_s": ours,
            "reference_s": reference,
            "ratio": ratio,
            "note": f"layer {layer.path} {tuple(layer.output_shape[1:])}; reference = compiled "
            f"forward + gradient of the top logit w.r.t. the input; {goal}",
        })
        if method in peers:
            seconds, maps = peers[method]
            correlation = heatmap_correlation(explain().maps[method], maps)
            rows.append({
                "benchmark": f"cam vs tf-keras-vis: {work}",
                "ours_s": ours,
                "reference_s": seconds,
                "ratio": ours / seconds,
                "note": "tf-keras-vis with ReplaceToLinear on the same model, layer and batch; "
                f"lowest per-image heatmap correlation {correlation:.4f}",
            })
    return rows


def tf_keras_vis_runs(model, layer_path: str, inputs) -> dict[str, tuple[float, object]]:
    """tf-keras-vis GradCAM, GradCAM++ and Faster-ScoreCAM on the same work: per method, its
    median seconds and its maps at the layer's resolution (empty where it is not installed)."""
    import contextlib
    import io

    try:
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
        from tf_keras_vis.scorecam import Scorecam
        from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
        from tf_keras_vis.utils.scores import CategoricalScore
    except ImportError:
        return {}
    score = CategoricalScore(model.predict(inputs, verbose=0).argmax(axis=1).tolist())
    common = {"penultimate_layer": layer_path, "expand_cam": False}
    runs = {
        "gradcam": (Gradcam, {}, REPEATS),
        "gradcam++": (GradcamPlusPlus, {}, REPEATS),
        "faster-scorecam": (Scorecam, {"max_N": 10, "batch_size": 32}, 3),
    }
    results = {}
    with contextlib.redirect_stdout(io.StringIO()):  # its progress bars
        for method, (visualizer_class, extra, repeats) in runs.items():
            visualizer = visualizer_class(model, model_modifier=ReplaceToLinear(), clone=True)
            explain = lambda v=visualizer, e=extra: v(score, inputs, **common, **e)  # noqa: E731
            results[method] = (median_seconds(explain, repeats=repeats), explain())
    return results


def heatmap_correlation(ours, theirs) -> float:
    """The lowest per-image Pearson correlation between two stacks of maps."""
    import numpy as np

    pairs = zip(np.reshape(ours, (len(ours), -1)), np.reshape(theirs, (len(theirs), -1)),
                strict=True)
    return min(float(np.corrcoef(a, b)[0, 1]) for a, b in pairs)


def pointing_game(count: int = 200, size: int = 128, seed: int = 0) -> dict[str, float]:
    """Per method, the fraction of class-A heatmaps peaking inside shape A (two-shape images)."""
    import numpy as np

    from cnnviz_cli.demo.shapes import make_pairs
    from cnnviz_cli.models.layers import last_feature_map
    from cnnviz_cli.models.resolve import ModelRequest, resolve_model
    from cnnviz_cli.techniques.cam import METHODS, CamExplainer, CamOptions, Targets
    from cnnviz_cli.techniques.metrics import pointing_game as hits

    resolved = resolve_model(ModelRequest("demo"))
    images, labels, masks = make_pairs(count, size, seed)
    explainer = CamExplainer(resolved.model, last_feature_map(resolved.model).path,
                             (size, size, 3))
    inputs = resolved.prepare(images)
    found: dict[str, list] = {method: [] for method in METHODS}
    for start in range(0, count, 16):
        part = slice(start, start + 16)
        for shape in (0, 1):  # explain each of the two shapes of every image
            targets = Targets(per_image=tuple(int(label) for label in labels[part, shape]))
            result = explainer(inputs[part], targets, list(METHODS), CamOptions(batch_size=64))
            for method, maps in result.maps.items():
                found[method] += list(hits(maps, masks[part, shape]))
    return {method: float(np.mean(values)) for method, values in found.items()}


if __name__ == "__main__":
    if sys.argv[1:] == ["pointing"]:
        for method, fraction in pointing_game().items():
            print(f"| {method} | {100 * fraction:.1f} % |")
    else:
        for row in measure():
            print(row)
