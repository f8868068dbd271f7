"""`cnnviz_cli.activations`: the feature maps an image produces, layer by layer."""

from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path

import numpy as np

from cnnviz_cli.api.inputs import ImageSource, LoadedImage
from cnnviz_cli.api.results import File, Result, Series, slug, stack
from cnnviz_cli.api.run import Plan, Technique, run
from cnnviz_cli.api.tables import CHECKPOINTS, IMAGES, MODEL_OPTIONS, OUTPUT, OUTPUT_OPTIONS, RUN
from cnnviz_cli.options import Option, Table


@dataclass
class ActivationsItem:
    """One image's feature maps: `maps[layer]` is (height, width, channels)."""

    image: LoadedImage
    maps: dict[str, np.ndarray]
    concepts: dict[str, np.ndarray] = field(default_factory=dict)  # layer -> (h, w, K) regions


@dataclass(repr=False)
class ActivationsResult(Result):
    """Feature maps per image and layer (`items[i].maps[layer]`), with their grids."""

    command = "activations"
    concept_vectors: dict[str, np.ndarray] = field(default_factory=dict)  # layer -> (K, channels)

    @property
    def maps(self) -> list[dict[str, np.ndarray]]:
        """Per image, the feature maps of every layer."""
        return [item.maps for item in self.items]

    def _files(self, item: ActivationsItem):
        from cnnviz_cli.render.colour import normalize, overlay
        from cnnviz_cli.render.maps import feature_grid
        from cnnviz_cli.techniques.activations import LayerActivations

        options, image = self.options, item.image
        for layer, maps in item.maps.items():
            computed = LayerActivations(layer, maps[None])
            channels = computed.channel_order(0, options["order"])[: options["max_channels"]]
            record = {"input": image.name, "layer": layer, "shape": list(maps.shape),
                      **computed.statistics(0)}
            name = f"{image.key}/activations-{slug(layer)}"
            title = f"{image.title} · {layer} · {maps.shape[-1]} channels"
            yield File(f"{name}.png", {**record, "kind": "grid", "channels": channels.tolist()},
                       partial(feature_grid, maps, channels, options["scale"],
                               options["colormap"], title))
            yield File(f"{name}-overlay.png", {**record, "kind": "overlay"},
                       partial(overlay, image.original, normalize(computed.mean_map(0)),
                               options["colormap"], options["alpha"]))
        yield from self._concept_files(item)

    def _concept_files(self, item: ActivationsItem):
        from cnnviz_cli.render.concepts import concept_overlay
        from cnnviz_cli.techniques.concepts import top_channels

        for layer, regions in item.concepts.items():
            channels = top_channels(self.concept_vectors[layer])
            strengths = regions.reshape(-1, regions.shape[-1]).mean(axis=0)
            yield File(f"{item.image.key}/concepts-{slug(layer)}.png",
                       {"input": item.image.name, "layer": layer, "kind": "concepts",
                        "top_channels": channels, "strength": strengths.round(6).tolist()},
                       partial(concept_overlay, item.image.original, regions, channels,
                               self.options["alpha"], f"{item.image.title} · {layer}"))

    def files(self):
        yield from super().files()
        if self.options.get("factorize"):
            for layer, vectors in self.concept_vectors.items():
                record = {"layer": layer, "kind": "concept-vectors", "shape": list(vectors.shape)}
                yield File(f"concepts-{slug(layer)}.npy", record,
                           partial(np.asarray, vectors), kind="npy")

    def _series(self, item: ActivationsItem):
        for file in self._files(item):
            if file.record["kind"] == "grid":
                record = file.record
                numbers = {name: record[name] for name in ("mean", "max", "active_fraction")}
                yield Series(f"{item.image.key}/{record['layer']}", file.render,
                             numbers=numbers)

    def _picture(self, item: ActivationsItem) -> np.ndarray:
        shown = "concepts" if item.concepts else "grid"  # concepts when they were asked for
        return stack([file.render() for file in self._files(item)
                      if file.record["kind"] == shown])


@cache
def table() -> Table:
    """The options of `cnnviz activations` and `cnnviz_cli.activations`."""
    what, concepts = "What to show", "Concepts"
    own = (
        Option("layers", (), "Layer name, nested path (base/conv1), negative index, `all` "
               "(every feature map) or `auto` (the outputs of four stages from shallow to "
               "deep, the default).", multiple=True, flag="--layer", short="-l",
               metavar="LAYER", group=what),
        Option("max_channels", 32, "Feature maps drawn per layer grid, in the --order chosen.",
               int, low=1, group=what),
        Option("order", "mean", "Show the strongest channels first, or channels in index "
               "order.", ("mean", "index"), group=what),
        Option("scale", "shared", "One colour scale per grid, or one per feature map.",
               ("shared", "each"), group=OUTPUT),
        Option("colormap", "viridis", "Matplotlib colour map of the feature maps and the "
               "overlay.", group=OUTPUT),
        Option("alpha", 0.55, "Opacity of the overlay's heat colours.", float, low=0, high=1,
               group=OUTPUT),
        Option("factorize", None, "Fit K concepts (NMF of each layer's maps over all the "
               "images): per image their regions in colour (concepts-<layer>.png), the vectors "
               "in concepts-<layer>.npy.", int, low=1, metavar="K", group=concepts,
               show_default=False),
        Option("concepts", None, "Apply concepts that --factorize saved (a .npy file, or in "
               "Python a (K, channels) array), at the one --layer they were fitted at.", Path,
               metavar="FILE.npy", group=concepts, show_default=False),
    )
    return Table("activations", IMAGES, RUN, CHECKPOINTS, MODEL_OPTIONS, own, OUTPUT_OPTIONS)


def activations(model, images: ImageSource, settings: dict | None = None, /, *,
                progress: bool = False, **options) -> ActivationsResult:
    """The feature maps images produce at some layers, from one compiled forward pass.

    Args:
        model, images, settings, progress: as for `cnnviz_cli.cam`.
        **options: the options of `cnnviz activations` by their keyword (`cnnviz activations
            --help`, or `cnnviz_cli.api.activations.table()`): layers (names, nested paths,
            negative indices, `all` or `auto`), max_channels, order, scale, colormap, alpha,
            factorize (K concepts fitted over all the images), concepts (a .npy file or a
            (K, channels) array), checkpoints, out, size, batch_size, preprocess, labels, ...

    Returns:
        An ActivationsResult; `save(out)` writes the grids and overlays the command writes.
    """
    return run(TECHNIQUE, model, images, {**(settings or {}), **options}, progress)


def _prepare(resolved, settings: dict, run: dict, session) -> Plan:
    """Per batch: the feature maps of every chosen layer; with concepts, their regions (fitted
    ones after the last batch)."""
    from cnnviz_cli.api.concepts import ConceptStep
    from cnnviz_cli.models.layers import resolve_feature_maps
    from cnnviz_cli.techniques.activations import ActivationExtractor

    height, width = resolved.image_size(run["size"])
    chosen = resolve_feature_maps(resolved.model, tuple(settings["layers"]), "activations",
                                  (height, width))
    paths = [info.path for info in chosen]

    def extractor(pixels):  # one per size the images are computed at
        shape = (*pixels.shape[1:3], resolved.channels)
        return resolved.reuse(("activations", *paths, shape), lambda: ActivationExtractor(
            resolved.model, paths, shape))(pixels)

    step = ConceptStep(settings["factorize"], settings["concepts"],
                       {info.path: info.output_shape[-1] for info in chosen}, run)

    def each(batch: list[LoadedImage]) -> list[ActivationsItem]:
        computed = extractor(resolved.prepare(np.stack([image.resized for image in batch])))
        items = [ActivationsItem(image, {layer.layer_path: layer.maps[index]
                                         for layer in computed})
                 for index, image in enumerate(batch)]
        if step.holds:
            step.held += items
            return []
        step.apply(items)
        return items

    return Plan(each, end=lambda: step.fit() if step.holds else [],
                fields={"concept_vectors": step.vectors},
                finish=lambda: {"metrics": step.metrics()})


TECHNIQUE = Technique(table, ActivationsResult, _prepare,
                      not_with_checkpoints=("factorize", "concepts"))
