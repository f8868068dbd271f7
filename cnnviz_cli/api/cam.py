"""`cnnviz_cli.cam`: heatmaps of the pixels that drove a class score (the CAM family)."""

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cnnviz_cli.api.inputs import ImageSource, LoadedImage
from cnnviz_cli.api.results import (
    File,
    Result,
    Series,
    collect,
    locals_of,
    open_session,
    part,
    slug,
)
from cnnviz_cli.errors import CnnvizError

if TYPE_CHECKING:
    from cnnviz_cli.techniques.trust import Cascade


@dataclass
class CamItem:
    """The heatmaps of one (image, class): `maps[method]` at the model's input size."""

    image: LoadedImage
    record: dict  # input, layer, class, label, score, probability, score_kind
    maps: dict[str, np.ndarray]
    fields: dict[str, dict]  # per method: heatmap statistics, metrics, region, baseline
    region: np.ndarray | None = None  # segmentation: the pixels whose score is explained
    sanity: "Cascade | None" = None  # the maps of the randomised models (sanity=True)

    @property
    def label(self) -> str:
        return self.record["label"]


@dataclass(repr=False)
class CamResult(Result):
    """Heatmaps per (image, class) and method, the numbers the manifest records, the method
    ranking (`ranking`, with metrics=True), the trust metrics' table (`trust`) and the gates
    (`gates`, `passed`)."""

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
    def trust(self) -> list[dict]:
        """Per method, the means of the trust metrics computed (metrics=[names])."""
        return self.metrics.get("trust", [])

    @property
    def gates(self) -> list[dict]:
        return self.metrics.get("gates", [])

    @property
    def passed(self) -> bool:
        """Whether every gate passed (True without gates)."""
        return all(row["passed"] for row in self.gates)

    def _overlay(self, item: CamItem, method: str) -> np.ndarray:
        from cnnviz_cli.render.cam import outline

        picture = self._heat(item, item.maps[method])
        return picture if item.region is None else outline(picture, item.region)

    def _heat(self, item: CamItem, heat: np.ndarray) -> np.ndarray:
        from cnnviz_cli.render.cam import heat_overlay

        return heat_overlay(item.image.original, heat, self.options["colormap"],
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
        if item.sanity is not None:
            yield File(f"{image.key}/cam-sanity-{slug(item.label)}.png",
                       {**item.record, "kind": "sanity", "methods": list(item.maps),
                        "layers": item.sanity.labels}, partial(self._sanity, item))

    def _sanity(self, item: CamItem) -> np.ndarray:
        from cnnviz_cli.render.cam import sanity_figure

        cascade = item.sanity
        rows = {method: [self._heat(item, heat) for heat in (item.maps[method], *maps)]
                for method, maps in cascade.maps.items()}
        return sanity_figure(rows, cascade, f"Sanity check · {item.image.title} · {item.label}")

    def _picture(self, item: CamItem) -> np.ndarray:
        return self._panel(item)

    def _series(self, item: CamItem):
        from cnnviz_cli.render.report import score_text

        record = item.record
        numbers = {name: record[name] for name in ("score", "probability")
                   if record[name] is not None}
        for method in item.maps:
            yield Series(f"{item.image.key}/{method}", partial(self._overlay, item, method),
                         f"{item.label} · {score_text(record)}", numbers,
                         {"class": record["class"], "label": item.label, **item.fields[method]})


def cam(
    model,
    images: ImageSource,
    *,
    methods: Sequence[str] = ("gradcam",),
    classes: Sequence[str | int] = (),
    top_k: int | None = None,
    threshold: float | None = None,
    layer: str = "auto",
    output: str | int | None = None,
    task: str | None = None,
    direction: str | None = None,
    reference: ImageSource | None = None,
    max_n: int = 10,
    samples: int = 32,
    noise: float = 0.15,
    ig_steps: int = 32,
    ig_baseline: str = "blur",
    patch: int = 16,
    stride: int = 8,
    fill: str = "mean",
    masks: int = 1000,
    seed: int = 0,
    colormap: str = "turbo",
    alpha: float = 0.7,
    save_npy: bool = False,
    metrics: bool | Sequence[str] = False,
    metric_steps: int = 32,
    sanity: bool = False,
    targets: str | Path | None = None,
    baseline: str | Path | None = None,
    fail_under: Sequence = (),
    fail_over: Sequence = (),
    fail_under_each: Sequence = (),
    fail_over_each: Sequence = (),
    preprocess=None,
    labels=None,
    checkpoints: Sequence[str | Path] = (),
    out: str | Path | None = None,
    tensorboard: str | Path | None = None,
    progress: bool = False,
    **run,
) -> CamResult:
    """Heatmaps of the pixels that drove class scores, by every CAM and attribution method.

    The score explained is pre-activation (a final softmax or sigmoid is left out) and what it
    is depends on the head's task (see models.heads); `probability` is the head's own.

    Args:
        model: a name, a model file, a keras.Model or a `load_model` result.
        images: paths, folders, globs, PIL images or uint8 arrays (or a list of these).
        methods: gradcam, gradcam++, xgradcam, layercam, hirescam, eigencam, scorecam,
            faster-scorecam, guided-gradcam, saliency, smoothgrad, integrated-gradients,
            gradient-input, occlusion, rise, or `all` (comma lists too).
        classes: classes to explain (indices or labels) [default: each image's top-1].
        top_k: also explain the K top predictions.
        threshold: a multi-label head: also explain every label of probability >= threshold.
        layer: a feature-map layer; `auto` = the deepest one larger than 1x1 before pooling.
        output: which output of a model with several (name or index).
        task: classify, binary, multilabel, regress, segment or embed [default: decided from
            the output's final activation and shape].
        direction: a regression head: `up` (what raises the output, the default) or `down`.
        reference: with task="embed", images whose mean embedding the inputs are compared with.
        max_n, samples, noise, ig_steps, ig_baseline, seed: Faster-ScoreCAM channels,
            SmoothGrad copies and noise, integrated-gradients steps and baseline, the seed
            (SmoothGrad, the noise baseline, RISE).
        patch, stride, fill: occlusion's square patch side and step in pixels, and what
            hides the patch: mean (the image's mean colour), black or blur.
        masks: RISE's number of random masks.
        colormap, alpha: the heatmaps' colour map and the overlay opacity.
        save_npy: also write the raw maps as .npy files.
        metrics: True: deletion and insertion AUC of every heatmap, and a ranking of the
            methods; or metric names: deletion, insertion, road, mufidelity, stability,
            randomisation, random-logit, sparseness, complexity (means per method in
            `trust`).
        metric_steps: points along the deletion and insertion curves.
        sanity: the sanity-check figure of every item: the maps after re-initialising ever
            more layers of a copy of the model (computes randomisation).
        targets: a CSV of per-image classes and regions (pointing game, energy inside).
        baseline: an earlier `save_npy` run's folder to compare every map with.
        fail_under, fail_over, fail_under_each, fail_over_each: gates as `METRIC=VALUE`
            strings; `passed` tells whether all hold.
        preprocess, labels: as for `load_model`.
        checkpoints: model or weights files saved during training, in order: the technique
            runs on each; one strip (a row per checkpoint) and GIF per picture followed.
        out: write the files while computing (memory stays flat; the result then keeps none).
        tensorboard: also write the pictures and numbers as TensorBoard summaries into
            this log folder (step 0; with checkpoints, the checkpoint's index).
        progress: show a progress bar and messages on stderr.
        **run: size, batch_size (16), max_pixels, skip_existing, fail_fast, shard, force.

    Returns:
        A CamResult: per (image, class) item `maps`, `classes`, `labels`, `scores`,
        `probabilities`; `ranking`, `trust`, `gates` and `passed`.
    """
    from cnnviz_cli.api.evolution import over_checkpoints, refuse_with_checkpoints
    from cnnviz_cli.api.gates import GATE_OPTIONS, Checks
    from cnnviz_cli.api.heads import model_head
    from cnnviz_cli.api.models import load_model
    from cnnviz_cli.api.results import image_words
    from cnnviz_cli.api.trust import resolve_metrics
    from cnnviz_cli.models.formats import check_methods
    from cnnviz_cli.models.heads import check_headless, check_threshold
    from cnnviz_cli.models.layers import find_feature_map, last_feature_map
    from cnnviz_cli.techniques.cam import (
        CamExplainer,
        CamOptions,
        Targets,
        output_index,
        resolve_methods,
    )

    chosen_metrics = resolve_metrics(metrics, sanity)
    resolved = load_model(model, preprocess=preprocess, labels=labels)
    chosen = resolve_methods(list(methods))
    check_methods(resolved.details, resolved.source, chosen)
    exported = "format" in resolved.details  # no layers: the methods that need none
    if exported and layer != "auto":
        raise CnnvizError(f"--layer applies to Keras models only: {resolved.source} is an "
                          "exported model without layers; leave it out.")
    if exported and "randomisation" in chosen_metrics:
        raise CnnvizError(f"--sanity and --metric randomisation re-initialise the model's "
                          f"layers, and {resolved.source} is an exported model without layers; "
                          "run them on its .keras file.")
    arguments = {**locals_of(cam, locals()), "methods": chosen,
                 "classes": [str(c) for c in classes],
                 "reference": None if reference is None else image_words(reference)}
    for option in GATE_OPTIONS:
        arguments[option] = [_gate_text(spec) for spec in arguments[option]]
    if checkpoints:
        refuse_with_checkpoints(arguments, ("metrics", "sanity", "targets", "baseline",
                                            "save_npy", *GATE_OPTIONS))
        return over_checkpoints(cam, resolved, arguments, checkpoints, out, progress,
                                run_defaults={"batch_size": 16})
    session, run = open_session("cam", cam, arguments, resolved, out, progress,
                                run_defaults={"batch_size": 16})
    with session:
        height, width = resolved.image_size(run["size"])
        info = (None if exported
                else last_feature_map(resolved.model, (height, width)) if layer == "auto"
                else find_feature_map(resolved.model, layer))
        head = model_head(resolved, output_index(resolved.model, output), task, direction,
                          reference, (height, width), run["max_pixels"])
        check_threshold(head, threshold)
        check_headless(head, classes or targets)
        shape, path = (height, width, resolved.channels), info and info.path
        explainer = resolved.reuse(
            ("cam", path, shape, output, head.key),
            lambda: CamExplainer(resolved.model, path, shape, output, head))
        wanted = Targets(tuple(resolved.class_index(spec, explainer.num_classes, head.labels)
                               for spec in classes), top_k, threshold=threshold)
        settings = CamOptions(max_channels=max_n, batch_size=run["batch_size"], samples=samples,
                              noise=noise, ig_steps=ig_steps, ig_baseline=ig_baseline, seed=seed,
                              patch=patch, stride=stride, fill=fill, masks=masks,
                              preprocess=resolved.preprocess)
        measured = {**arguments, "out": out, "metrics": chosen_metrics}
        checks = Checks(measured,
                        lambda spec: resolved.class_index(spec, explainer.num_classes, head.labels),
                        session.warn, images)
        measured["trust"] = _trust_metrics(explainer, chosen_metrics, settings,
                                           (height, width, resolved.channels))
        blank = False  # warned once of an all-zero map
        for batch in session.batches(images, run):
            targets = checks.targets_for(batch, wanted, head.task == "segment")
            items = _explain(explainer, resolved, batch, targets, chosen, settings, checks,
                             measured, run["batch_size"])
            blank = blank or _warn_blank(session, items, resolved.model, path, (height, width))
            session.keep(part(session, CamResult, items))
        records = _records(session)
        return collect(session, CamResult, metrics={"head": head.describe(),
                                                    **checks.finish(records)})


def _warn_blank(session, items: list[CamItem], model, layer_path: str | None,
                size: tuple[int, int]) -> bool:
    """Warn (once: returns True) when a map is all zero, naming a layer that does better."""
    from cnnviz_cli.models.layers import layer_instead

    blank = next(((item, method) for item in items for method, heat in item.maps.items()
                  if not np.any(heat)), None)
    if blank is None:
        return False
    (item, method), better = blank, layer_path and layer_instead(model, layer_path, size)
    hint = f"; try -l {better}" if better else ""
    where = f" at layer {layer_path}" if layer_path else ""
    session.warn(f"The {method} map of {item.record['input']} is all zero{where}: nothing "
                 f"there raises the score (after a ViT's last block only the class token "
                 f"does){hint}.")
    return True


def _trust_metrics(explainer, metrics: list[str], settings, input_shape: tuple):
    """The TrustMetrics of the trust metrics among `metrics` (None without any)."""
    from cnnviz_cli.api.trust import TRUST_METRICS

    names = [name for name in metrics if name in TRUST_METRICS]
    if not names:
        return None
    from cnnviz_cli.techniques.trust import TrustMetrics

    return TrustMetrics(explainer, names, settings, input_shape)


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
              if "deletion" in options["metrics"] and len(result.classes) else {})
    trusted, cascade = (options["trust"](inputs, result) if options["trust"] and len(result.classes)
                        else ({}, None))
    checked = checks.measure(batch, result)
    items = []
    for item, image_index in enumerate(result.image_indices):
        class_index = int(result.classes[item])
        record = {"input": batch[image_index].name, "layer": result.layer_path,
                  "task": explainer.head.task, "class": class_index,
                  "label": resolved.label(class_index, explainer.head.labels),
                  **result.score_fields(item)}
        fields = {}
        for method in result.maps:
            fields[method] = {"heatmap": result.statistics(method, item),
                              **checked[method][item]}
            if method in scores:
                fields[method]["deletion_auc"] = float(scores[method].deletion_auc[item])
                fields[method]["insertion_auc"] = float(scores[method].insertion_auc[item])
            fields[method].update(trusted[method][item] if trusted else {})
        maps = {method: maps[item] for method, maps in result.maps.items()}
        region = None if result.regions is None else result.regions[item]
        sanity = cascade.of_item(item) if cascade and options["sanity"] else None
        items.append(CamItem(batch[image_index], record, maps, fields, region, sanity))
    return items
