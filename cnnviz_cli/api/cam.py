"""`cnnviz_cli.cam`: heatmaps of the pixels that drove a class score (the CAM family)."""

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from cnnviz_cli.api.inputs import ImageSource, LoadedImage
from cnnviz_cli.api.results import File, Result, collect, locals_of, open_session, part, slug


@dataclass
class CamItem:
    """The heatmaps of one (image, class): `maps[method]` at the model's input size."""

    image: LoadedImage
    record: dict  # input, layer, class, label, score, probability, score_kind
    maps: dict[str, np.ndarray]
    fields: dict[str, dict]  # per method: heatmap statistics, metrics, region, baseline

    @property
    def label(self) -> str:
        return self.record["label"]


@dataclass(repr=False)
class CamResult(Result):
    """Heatmaps per (image, class) and method, the numbers the manifest records, the method
    ranking (`ranking`, with metrics=True) and the gates (`gates`, `passed`)."""

    command = "cam"

    @property
    def maps(self) -> list[dict[str, np.ndarray]]:
        return [item.maps for item in self.items]

    @property
    def classes(self) -> list[int]:
        return [item.record["class"] for item in self.items]

    @property
    def labels(self) -> list[str]:
        return [item.label for item in self.items]

    @property
    def scores(self) -> list[float]:
        return [item.record["score"] for item in self.items]

    @property
    def probabilities(self) -> list[float | None]:
        return [item.record["probability"] for item in self.items]

    @property
    def ranking(self) -> list[dict]:
        from cnnviz_cli.io.manifests import FAITHFULNESS

        return self.metrics.get(FAITHFULNESS, [])

    @property
    def gates(self) -> list[dict]:
        return self.metrics.get("gates", [])

    @property
    def passed(self) -> bool:
        """Whether every gate passed (True without gates)."""
        return all(row["passed"] for row in self.gates)

    def _overlay(self, item: CamItem, method: str) -> np.ndarray:
        from cnnviz_cli.render.cam import heat_overlay

        return heat_overlay(item.image.original, item.maps[method], self.options["colormap"],
                            self.options["alpha"])

    def _panel(self, item: CamItem) -> np.ndarray:
        from cnnviz_cli.render.cam import method_panel
        from cnnviz_cli.render.report import score_text

        overlays = [self._overlay(item, method) for method in item.maps]
        title = f"{item.image.title} · {item.label} · {score_text(item.record)}"
        return method_panel(item.image.original, overlays, list(item.maps), title)

    def _files(self, item: CamItem):
        from cnnviz_cli.render.cam import bare_heatmap

        image, colormap = item.image, self.options["colormap"]
        for method, heat in item.maps.items():
            name = f"{image.key}/cam-{slug(method.replace('+', 'p'))}-{slug(item.label)}"
            entry = {**item.record, "method": method, **item.fields[method]}
            yield File(f"{name}.png", {**entry, "kind": "overlay"},
                       partial(self._overlay, item, method))
            yield File(f"{name}-heatmap.png", {**entry, "kind": "heatmap"},
                       partial(bare_heatmap, heat, image.original.shape[:2], colormap))
            if self.options["save_npy"]:
                yield File(f"{name}.npy", {**entry, "kind": "map"}, partial(np.asarray, heat),
                           kind="npy")
        if len(item.maps) > 1:
            yield File(f"{image.key}/cam-panel-{slug(item.label)}.png",
                       {**item.record, "kind": "panel", "methods": list(item.maps)},
                       partial(self._panel, item))

    def _picture(self, item: CamItem) -> np.ndarray:
        return self._panel(item)


def cam(
    model,
    images: ImageSource,
    *,
    methods: Sequence[str] = ("gradcam",),
    classes: Sequence[str | int] = (),
    top_k: int | None = None,
    layer: str = "auto",
    output: str | int | None = None,
    max_n: int = 10,
    samples: int = 32,
    noise: float = 0.15,
    ig_steps: int = 32,
    ig_baseline: str = "blur",
    seed: int = 0,
    colormap: str = "turbo",
    alpha: float = 0.7,
    save_npy: bool = False,
    metrics: bool = False,
    metric_steps: int = 32,
    targets: str | Path | None = None,
    baseline: str | Path | None = None,
    fail_under: Sequence = (),
    fail_over: Sequence = (),
    fail_under_each: Sequence = (),
    fail_over_each: Sequence = (),
    preprocess=None,
    labels=None,
    out: str | Path | None = None,
    progress: bool = False,
    **run,
) -> CamResult:
    """Heatmaps of the pixels that drove class scores, by every CAM and attribution method.

    The score explained is the class logit (a final softmax is left out); `probability` is
    the model's own.

    Args:
        model: a name, a model file, a keras.Model or a `load_model` result.
        images: paths, folders, globs, PIL images or uint8 arrays (or a list of these).
        methods: gradcam, gradcam++, xgradcam, layercam, hirescam, eigencam, scorecam,
            faster-scorecam, guided-gradcam, saliency, smoothgrad, integrated-gradients,
            gradient-input, or `all` (comma lists too).
        classes: classes to explain (indices or labels) [default: each image's top-1].
        top_k: also explain the K top predictions.
        layer: a feature-map layer; `auto` = the last one before the classifier head.
        output: which output of a model with several (name or index).
        max_n, samples, noise, ig_steps, ig_baseline, seed: Faster-ScoreCAM channels,
            SmoothGrad copies and noise, integrated-gradients steps and baseline, the seed.
        colormap, alpha: the heatmaps' colour map and the overlay opacity.
        save_npy: also write the raw maps as .npy files.
        metrics: deletion and insertion AUC of every heatmap, and a ranking of the methods.
        metric_steps: points along the deletion and insertion curves.
        targets: a CSV of per-image classes and regions (pointing game, energy inside).
        baseline: an earlier `save_npy` run's folder to compare every map with.
        fail_under, fail_over, fail_under_each, fail_over_each: gates as `METRIC=VALUE`
            strings; `passed` tells whether all hold.
        preprocess, labels: as for `load_model`.
        out: write the files while computing (memory stays flat; the result then keeps none).
        progress: show a progress bar and messages on stderr.
        **run: size, batch_size (16), max_pixels, skip_existing, fail_fast, shard, force.

    Returns:
        A CamResult: per (image, class) item `maps`, `classes`, `labels`, `scores`,
        `probabilities`; `ranking`, `gates` and `passed`.
    """
    from cnnviz_cli.api.gates import Checks
    from cnnviz_cli.api.models import load_model
    from cnnviz_cli.models.layers import find_feature_map, last_feature_map
    from cnnviz_cli.techniques.cam import CamExplainer, CamOptions, Targets, resolve_methods

    resolved = load_model(model, preprocess=preprocess, labels=labels)
    chosen = resolve_methods(list(methods))
    arguments = {**locals_of(cam, locals()), "methods": chosen,
                 "classes": [str(c) for c in classes]}
    for option in ("fail_under", "fail_over", "fail_under_each", "fail_over_each"):
        arguments[option] = [_gate_text(spec) for spec in arguments[option]]
    session, run = open_session("cam", cam, arguments, resolved, out, progress,
                                run_defaults={"batch_size": 16})
    with session:
        info = (last_feature_map(resolved.model) if layer == "auto"
                else find_feature_map(resolved.model, layer))
        height, width = resolved.image_size(run["size"])
        explainer = CamExplainer(resolved.model, info.path, (height, width, resolved.channels),
                                 output)
        wanted = Targets(tuple(resolved.class_index(spec, explainer.num_classes)
                               for spec in classes), top_k)
        settings = CamOptions(max_channels=max_n, batch_size=run["batch_size"], samples=samples,
                              noise=noise, ig_steps=ig_steps, ig_baseline=ig_baseline, seed=seed,
                              preprocess=resolved.preprocess)
        checks = Checks({**arguments, "out": out},
                        lambda spec: resolved.class_index(spec, explainer.num_classes),
                        session.warn, images)
        for batch in session.batches(images, run):
            items = _explain(explainer, resolved, batch, checks.targets_for(batch, wanted),
                             chosen, settings, checks, arguments, run["batch_size"])
            session.keep(part(session, CamResult, items))
        records = _records(session)
        return collect(session, CamResult, metrics=checks.finish(records))


def _gate_text(spec) -> str:
    return spec if isinstance(spec, str) else "=".join(str(part) for part in spec)


def _records(session) -> list[dict]:
    """Every heatmap record of the run so far: written ones, or those kept in memory."""
    if session.outputs is not None:
        session.outputs.end_batch()
        session.outputs.flush()
        return session.outputs.records
    return [record for kept in session.parts for record in kept.records()]


def _explain(explainer, resolved, batch: list[LoadedImage], targets, methods: list[str],
             settings, checks, options: dict, batch_size: int) -> list[CamItem]:
    """The CamItems of one batch: maps, score fields, metrics, region and baseline scores."""
    from cnnviz_cli.techniques.metrics import faithfulness

    inputs = resolved.prepare(np.stack([image.resized for image in batch]))
    result = explainer(inputs, targets, methods, settings)
    scores = (faithfulness(explainer, inputs, result, options["metric_steps"], batch_size)
              if options["metrics"] else {})
    checked = checks.measure(batch, result)
    items = []
    for item, image_index in enumerate(result.image_indices):
        class_index = int(result.classes[item])
        record = {"input": batch[image_index].name, "layer": result.layer_path,
                  "class": class_index, "label": resolved.label(class_index),
                  **result.score_fields(item)}
        fields = {}
        for method in result.maps:
            fields[method] = {"heatmap": result.statistics(method, item),
                              **checked[method][item]}
            if method in scores:
                fields[method]["deletion_auc"] = float(scores[method].deletion_auc[item])
                fields[method]["insertion_auc"] = float(scores[method].insertion_auc[item])
        maps = {method: maps[item] for method, maps in result.maps.items()}
        items.append(CamItem(batch[image_index], record, maps, fields))
    return items
