"""`cnnviz_cli.cam`: heatmaps of the pixels that drove a class score (the CAM family)."""

from dataclasses import dataclass, field, replace
from functools import cache, partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cnnviz_cli.api.inputs import ImageSource, LoadedImage
from cnnviz_cli.api.results import File, Result, Series, slug
from cnnviz_cli.api.run import Plan, Technique, run
from cnnviz_cli.api.tables import CHECKPOINTS, IMAGES, MODEL_OPTIONS, OUTPUT, OUTPUT_OPTIONS, RUN
from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.options import Option, Table

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
    attributions: dict[str, np.ndarray] = field(default_factory=dict)  # signed methods:
    # method -> (height, width, channels) raw signed attributions at the input

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

    def drawn(self, item: CamItem, method: str) -> tuple[np.ndarray, bool]:
        """The map drawn for a method: (map, signed). Signed attributions are drawn as
        `attribution_sign` says: their channel sum (signed), its absolute value or its
        positive part (the map the metrics use). The map covers the original image (a
        letterbox's padding removed, a crop placed back)."""
        if method not in item.attributions:
            return item.image.unframe(item.maps[method]), False
        total = item.attributions[method].sum(axis=-1)
        sign = self.options.get("attribution_sign", "signed")
        if sign == "signed":
            return item.image.unframe(total), True
        drawn = np.abs(total) if sign == "absolute" else item.maps[method]
        return item.image.unframe(drawn), False

    def _overlay(self, item: CamItem, method: str, image: np.ndarray | None = None) -> np.ndarray:
        """A method's map over `image`: the original image, or that image resized."""
        from cnnviz_cli.render.cam import outline, signed_overlay

        image = item.image.original if image is None else image
        heat, signed = self.drawn(item, method)
        region = None if item.region is None else item.image.unframe(
            np.asarray(item.region, dtype="float32")) > 0.5
        picture = (signed_overlay(image, heat, self.options["alpha"]) if signed
                   else self._heat(image, heat))
        return picture if region is None else outline(picture, region)

    def _heat(self, image: np.ndarray, heat: np.ndarray) -> np.ndarray:
        from cnnviz_cli.render.cam import heat_overlay

        return heat_overlay(image, heat, self.options["colormap"], self.options["alpha"])

    def _panel(self, item: CamItem) -> np.ndarray:
        from cnnviz_cli.render.cam import PANEL_HEIGHT, at_height, method_panel
        from cnnviz_cli.render.report import score_text

        image = at_height(item.image.original, PANEL_HEIGHT)  # drawn at the panel's size
        overlays = [self._overlay(item, method, image) for method in item.maps]
        title = f"{item.image.title} · {item.label} · {score_text(item.record)}"
        return method_panel(image, overlays, list(item.maps), title)

    def _heatmap(self, item: CamItem, method: str) -> np.ndarray:
        from cnnviz_cli.render.cam import bare_heatmap, signed_heatmap

        heat, signed = self.drawn(item, method)
        size = item.image.original.shape[:2]
        return (signed_heatmap(heat, size) if signed
                else bare_heatmap(heat, size, self.options["colormap"]))

    def _files(self, item: CamItem):
        image = item.image
        for method in item.maps:
            name = f"{image.key}/cam-{slug(method.replace('+', 'p'))}-{slug(item.label)}"
            entry = {**item.record, "method": method, **item.fields[method]}
            yield File(f"{name}.png", {**entry, "kind": "overlay"},
                       partial(self._overlay, item, method))
            yield File(f"{name}-heatmap.png", {**entry, "kind": "heatmap"},
                       partial(self._heatmap, item, method))
            if self.options["save_npy"]:
                raw = item.attributions.get(method, item.maps[method])
                yield File(f"{name}.npy", {**entry, "kind": "map"}, partial(np.asarray, raw),
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
        from cnnviz_cli.render.cam import SANITY_TILE, at_height, sanity_figure

        cascade, image = item.sanity, at_height(item.image.original, SANITY_TILE)
        rows = {method: [self._heat(image, item.image.unframe(heat))
                         for heat in (item.maps[method], *maps)]
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


WHAT = "What to explain"
METRICS = "Metrics and gates"


def _method_options() -> list[Option]:
    """Every method's own options (and the modifiers'), each in its methods' help section and
    applying only when one of its methods is chosen."""
    from cnnviz_cli.techniques.cam import MODIFIERS, methods

    users: dict[str, tuple[Option, list[str]]] = {}
    for spec in methods().values():
        for option in (*spec.options, *spec.modifier_options):
            users.setdefault(option.name, (option, []))[1].append(spec.name)
    modifiers = {extra.option.name for extra in MODIFIERS.values()}
    found = []
    for name, (option, names) in users.items():
        group = ("Method modifiers" if name in modifiers
                 else f"{' and '.join(names)} options".capitalize())
        found.append(replace(option, group=group, when="when --method includes "
                             + " or ".join(names),
                             applies=lambda settings, names=tuple(names): bool(
                                 set(settings["methods"]) & set(names))))
    return found


def _draws_at_random(settings: dict) -> bool:
    from cnnviz_cli.techniques.cam import methods
    from cnnviz_cli.techniques.trust import TRUST_METRICS

    return (any(methods()[name].draws_at_random(settings) for name in settings["methods"])
            or settings["sanity"] or any(TRUST_METRICS[name].random
                                         for name in settings["metric"]))


def _methods(values) -> list[str]:
    from cnnviz_cli.techniques.cam import resolve_methods

    return resolve_methods([str(value) for value in values])


def _gate(option: str, help_text: str) -> Option:
    def settle(values) -> list[tuple[str, float]]:
        from cnnviz_cli.api.gates import parse_gate

        return [parse_gate(value, option) for value in values]

    return Option(option, (), help_text, multiple=True, metavar="METRIC=VALUE", group=METRICS,
                  settle=settle, text=lambda spec: f"{spec[0]}={spec[1]!r}")


@cache
def table() -> Table:
    """The options of `cnnviz cam` and `cnnviz_cli.cam`."""
    from cnnviz_cli.api.gates import HIGHER, LOWER
    from cnnviz_cli.specs import DIRECTIONS, TASKS
    from cnnviz_cli.techniques.cam import methods
    from cnnviz_cli.techniques.trust import TRUST_METRICS

    explain = (
        Option("methods", ("gradcam",), f"{', '.join(methods())}, or all; repeatable or a comma "
               "list.", multiple=True, flag="--method", metavar="METHOD", group=WHAT,
               settle=_methods),
        Option("classes", (), "Class to explain, repeatable [default: each image's top-1 "
               "prediction].", multiple=True, flag="--class", metavar="INDEX|LABEL",
               group=WHAT, settle=lambda values: [str(value) for value in values]),
        Option("top_k", None, "Also explain the K top predictions.", int, low=1, group=WHAT,
               show_default=False),
        Option("layer", "auto", "A 4-D feature-map layer; auto = the deepest map larger than "
               "1x1 before the classifier head (VGG: block5_conv3; see `cnnviz layers`).",
               short="-l", metavar="LAYER", group=WHAT),
        Option("output", None, "Which output of a model with several outputs [default: the "
               "first].", metavar="NAME|INDEX", group=WHAT, show_default=False),
        Option("task", None, "What the output is [default: from its final activation and "
               "shape: softmax classify, one sigmoid binary, several multilabel, one linear "
               "unit regress, (batch, h, w, classes) segment]; embed needs --reference.", TASKS,
               group=WHAT, show_default=False),
        Option("direction", None, "A regression head: explain what raises (up) or lowers "
               "(down) the output [default: up].", DIRECTIONS, group=WHAT, show_default=False),
        Option("threshold", None, "A multi-label head: also explain every label of probability "
               ">= P (0 < P < 1).", float, low=0, high=1, open_low=True, open_high=True,
               metavar="P", group=WHAT, show_default=False),
        Option("reference", (), "With --task embed: images (files or folders, repeatable) "
               "whose mean embedding the cosine similarity of each input compares with.", Path,
               multiple=True, group=WHAT),
        Option("seed", 0, "Seeds every random draw: SmoothGrad noise, the noise baseline, the "
               "RISE masks and the trust metrics'.", int, group=WHAT, applies=_draws_at_random,
               when="when a method or metric that draws at random is chosen (smoothgrad, "
               "rise, integrated-gradients with --ig-baseline noise, --sanity, a random "
               "--metric)"),
    )
    drawing = (
        Option("colormap", "turbo", "Matplotlib colour map of the heatmaps.", group=OUTPUT),
        Option("alpha", 0.7, "Opacity of the hottest colours over the image (cold areas stay "
               "clear).", float, low=0, high=1, group=OUTPUT),
        Option("save_npy", False, "Also write the raw maps as .npy files (signed methods: the "
               "attributions per pixel and channel, (H, W, C)).", bool, group=OUTPUT),
        Option("attribution_sign", "signed", "What is drawn of a signed attribution ("
               + ", ".join(name for name, spec in methods().items() if spec.signed)
               + "): its channel sum with the sign, on a diverging map centred on zero (red "
               "positive, blue negative), its absolute value, or its positive part (what the "
               "metrics use).", ("signed", "absolute", "positive"), group=OUTPUT,
               applies=lambda settings: any(methods()[name].signed
                                            for name in settings["methods"]),
               when="when --method includes a signed method"),
    )
    measured = (
        Option("metrics", False, "Deletion and insertion AUC of every heatmap (and a ranking of "
               "the methods). Signed attributions are scored by their positive part, as the "
               "pointing game, energy and trust metrics do.", bool, group=METRICS),
        Option("metric_steps", 32, "Pixel fractions evaluated along the deletion and insertion "
               "curves.", int, low=2, group=METRICS, applies=lambda s: s["metrics"],
               when="with --metrics"),
        Option("metric", (), "A trust metric of every heatmap, repeatable: " + "; ".join(
               f"{name}: {metric.meaning}" for name, metric in TRUST_METRICS.items())
               + " (means per method in a table).", tuple(TRUST_METRICS), multiple=True,
               metavar="NAME", group=METRICS,
               settle=lambda values: [str(value).lower() for value in values]),
        Option("sanity", False, "Also draw <out>/<image>/cam-sanity-<label>.png: per method, the "
               "map after re-initialising the layers of a copy of the model from the top down, "
               "step by step, with its similarity to the trained model's (computes "
               "randomisation).", bool, group=METRICS),
        Option("targets", None, "CSV of rows image,class[,mask] or image,class,x0,y0,x1,y1: the "
               "class to explain per image (matched by path, file name or stem; a row per class "
               "for several) and the object's region, which scores its heatmaps (pointing game, "
               "energy inside) and is the region a segmentation head explains. Images without a "
               "row (or class) get the default target: --class/--top-k, else their top-1 "
               "prediction.", Path, group=METRICS, show_default=False),
        Option("baseline", None, "Output folder of an earlier `cam --save-npy` run: "
               "correlation and top-20 % IoU of every heatmap with its map there (same image, "
               "method and class).", Path, group=METRICS, show_default=False),
        _gate("fail_under", f"Exit 3 when a method's mean of METRIC ({HIGHER}) is below VALUE; "
              "repeatable."),
        _gate("fail_over", f"Exit 3 when a method's mean of METRIC ({LOWER}) is above VALUE; "
              "repeatable."),
        _gate("fail_under_each", "As --fail-under, for every single heatmap."),
        _gate("fail_over_each", "As --fail-over, for every single heatmap."),
    )
    run = [replace(option, default=16) if option.name == "batch_size" else option
           for option in RUN]
    return Table("cam", IMAGES, run, CHECKPOINTS, MODEL_OPTIONS, explain, _method_options(),
                 drawing, measured, OUTPUT_OPTIONS)


def cam(model, images: ImageSource, settings: dict | None = None, /, *,
        progress: bool = False, **options) -> CamResult:
    """Heatmaps of the pixels that drove class scores, by every CAM and attribution method.

    The score explained is pre-activation (a final softmax or sigmoid is left out) and what it
    is depends on the head's task (see models.heads); `probability` is the head's own.

    Args:
        model: a name, a model file, a keras.Model or a `load_model` result.
        images: paths, folders, globs, PIL images or uint8 arrays (or a list of these).
        settings: options as a dict (e.g. read from a file); keywords override them.
        progress: show a progress bar and messages on stderr.
        **options: the options of `cnnviz cam` by their keyword (`cnnviz cam --help`, or
            `cnnviz_cli.api.cam.table()`): methods (gradcam, ..., or all), classes, top_k,
            layer, each method's own options (samples, ig_steps, patch, ...), metrics, metric,
            sanity, targets, baseline, fail_under..., out, size, batch_size (16), ...

    Returns:
        A CamResult: per (image, class) item `maps`, `classes`, `labels`, `scores`,
        `probabilities`; `ranking`, `trust`, `gates` and `passed`.
    """
    return run(TECHNIQUE, model, images, {**(settings or {}), **options}, progress)


def _prepare(resolved, settings: dict, run: dict, session) -> Plan:
    """The explainer of the chosen methods, layer and head; per batch the CamItems; at the
    end the head, the checks' tables and the gates."""
    from cnnviz_cli.api.formats import check_methods
    from cnnviz_cli.api.gates import Checks
    from cnnviz_cli.api.heads import model_head
    from cnnviz_cli.api.trust import resolve_metrics
    from cnnviz_cli.models.heads import check_headless, check_threshold
    from cnnviz_cli.models.layers import find_feature_map, last_feature_map
    from cnnviz_cli.techniques.cam import CamExplainer, CamOptions, Targets, output_index

    chosen, layer = settings["methods"], settings["layer"]
    chosen_metrics = resolve_metrics(settings["metric"] + (["deletion"] if settings["metrics"]
                                                           else []), settings["sanity"])
    check_methods(resolved, chosen)
    exported = "layer" not in resolved.gives  # no layers: the methods that need none
    if exported and layer != "auto":
        raise CnnvizError(f"--layer applies to Keras models only: {resolved.source} is an "
                          "exported model without layers; leave it out.")
    if exported and "randomisation" in chosen_metrics:
        raise CnnvizError(f"--sanity and --metric randomisation re-initialise the model's "
                          f"layers, and {resolved.source} is an exported model without layers; "
                          "run them on its .keras file.")
    height, width = resolved.image_size(run["size"])
    info = (None if exported
            else last_feature_map(resolved.model, (height, width)) if layer == "auto"
            else find_feature_map(resolved.model, layer))
    output = settings["output"]
    head = model_head(resolved, output_index(resolved.model, output), settings["task"],
                      settings["direction"], settings["reference"] or None,
                      (height, width), run["max_pixels"])
    check_threshold(head, settings["threshold"])
    check_headless(head, settings["classes"] or settings["targets"])
    path = info and info.path

    def explainer_at(size: tuple[int, int]):  # one per size the images are computed at
        shape = (*size, resolved.channels)
        return resolved.reuse(("cam", path, shape, output, head.key),
                              lambda: CamExplainer(resolved.model, path, shape, output, head))

    explainer = explainer_at((height, width))
    wanted = Targets(tuple(resolved.class_index(spec, explainer.num_classes, head.labels)
                           for spec in settings["classes"]), settings["top_k"],
                     threshold=settings["threshold"])
    method_options = {option.name: settings[option.name] for option in _method_options()}
    cam_options = CamOptions(batch_size=run["batch_size"], seed=settings["seed"],
                             preprocess=resolved.preprocess, **method_options)
    measured = {**settings, "metrics": chosen_metrics}
    checks = Checks(measured,
                    lambda spec: resolved.class_index(spec, explainer.num_classes, head.labels),
                    session.warn, settings["images"])
    trust = cache(lambda size: _trust_metrics(explainer_at(size), chosen_metrics, cam_options,
                                              (*size, resolved.channels)))
    warned = []  # an all-zero map is warned of once

    def each(batch: list[LoadedImage]) -> list[CamItem]:
        size = tuple(batch[0].resized.shape[:2])
        measured["trust"] = trust(size)
        targets = checks.targets_for(batch, wanted, head.task == "segment")
        items = _explain(explainer_at(size), resolved, batch, targets, chosen, cam_options,
                         checks, measured, run["batch_size"])
        if not warned and _warn_blank(session, items, resolved.model, path, size):
            warned.append(True)
        return items

    return Plan(each, finish=lambda: {"metrics": {"head": head.describe(),
                                                  **checks.finish(_records(session))}})


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
                 f"there raises the score{hint}.")
    return True


def _trust_metrics(explainer, metrics: list[str], settings, input_shape: tuple):
    """The TrustMetrics of the trust metrics among `metrics` (None without any)."""
    from cnnviz_cli.techniques.trust import TRUST_METRICS, TrustMetrics

    names = [name for name in metrics if name in TRUST_METRICS]
    if not names:
        return None

    return TrustMetrics(explainer, names, settings, input_shape)


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
            fields[method].update(scores[method].fields(item) if method in scores else {})
            fields[method].update(trusted[method][item] if trusted else {})
            fields[method].update({name: float(values[item]) for name, values
                                   in result.extras.get(method, {}).items()})
        maps = {method: maps[item] for method, maps in result.maps.items()}
        attributions = {method: values[item] for method, values in result.attributions.items()}
        region = None if result.regions is None else result.regions[item]
        sanity = cascade.of_item(item) if cascade and options["sanity"] else None
        items.append(CamItem(batch[image_index], record, maps, fields, region, sanity,
                             attributions))
    return items


TECHNIQUE = Technique(table, CamResult, _prepare, not_with_checkpoints=(
    "metrics", "metric", "sanity", "targets", "baseline", "save_npy", "fail_under", "fail_over",
    "fail_under_each", "fail_over_each"))
