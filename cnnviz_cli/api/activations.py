"""`cnnviz_cli.activations`: the feature maps an image produces, layer by layer."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

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
    stack,
)


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


def activations(
    model,
    images: ImageSource,
    *,
    layers: Sequence[str] = (),
    max_channels: int = 32,
    order: str = "mean",
    scale: str = "shared",
    colormap: str = "viridis",
    alpha: float = 0.55,
    factorize: int | None = None,
    concepts: str | Path | np.ndarray | None = None,
    preprocess=None,
    labels=None,
    checkpoints: Sequence[str | Path] = (),
    out: str | Path | None = None,
    tensorboard: str | Path | None = None,
    progress: bool = False,
    **run,
) -> ActivationsResult:
    """The feature maps images produce at some layers, from one compiled forward pass.

    Args:
        model: a name, a model file, a keras.Model or a `load_model` result.
        images: paths, folders, globs, PIL images or uint8 arrays (or a list of these).
        layers: layer names, nested paths (base/conv1), negative indices, `all` or `auto`
            [default: the outputs of four stages spread from shallow to deep].
        max_channels: feature maps drawn per grid (strongest first with order="mean").
        order: `mean` (strongest mean activation first) or `index`.
        scale: `shared` (one colour scale per grid) or `each` (one per feature map).
        colormap: a matplotlib colour map name.
        alpha: opacity of the overlay's heat colours.
        factorize: fit this many concepts (NMF) at each layer over all the images: per image
            an overlay of their regions (concepts-<layer>.png), the vectors in
            concepts-<layer>.npy.
        concepts: apply saved concept vectors (a .npy file of `factorize`, or a (K, channels)
            array) at the one layer chosen, image by image.
        preprocess, labels: as for `load_model`.
        checkpoints: model or weights files saved during training, in order: the technique
            runs on each; one strip (a row per checkpoint) and GIF per picture followed.
        out: write the files while computing (memory stays flat; the result then keeps none).
        tensorboard: also write the pictures and numbers as TensorBoard summaries into
            this log folder (step 0; with checkpoints, the checkpoint's index).
        progress: show a progress bar and messages on stderr.
        **run: size, batch_size (8), max_pixels, skip_existing, fail_fast, shard (K, N),
            force.

    Returns:
        An ActivationsResult; `save(out)` writes the grids and overlays the command writes.
    """
    from cnnviz_cli.api.concepts import ConceptStep
    from cnnviz_cli.api.evolution import over_checkpoints, refuse_with_checkpoints
    from cnnviz_cli.api.models import load_model
    from cnnviz_cli.models.layers import resolve_feature_maps
    from cnnviz_cli.techniques.activations import ActivationExtractor

    resolved = load_model(model, preprocess=preprocess, labels=labels)
    arguments = {**locals_of(activations, locals()), "layers": tuple(layers)}
    if isinstance(concepts, np.ndarray):
        arguments["concepts"] = "<array in memory>"
    if checkpoints:
        refuse_with_checkpoints(arguments, ("factorize", "concepts"))
        return over_checkpoints(activations, resolved, arguments, checkpoints, out, progress)
    session, run = open_session("activations", activations, arguments, resolved, out, progress)
    with session:
        height, width = resolved.image_size(run["size"])
        chosen = resolve_feature_maps(resolved.model, tuple(layers), "activations",
                                      (height, width))
        paths = [info.path for info in chosen]

        def extractor(pixels):  # one per size the images are computed at
            shape = (*pixels.shape[1:3], resolved.channels)
            return resolved.reuse(("activations", *paths, shape), lambda: ActivationExtractor(
                resolved.model, paths, shape))(pixels)

        step = ConceptStep(factorize, concepts,
                           {info.path: info.output_shape[-1] for info in chosen}, run)
        for batch in session.batches(images, run):
            computed = extractor(resolved.prepare(np.stack([image.resized for image in batch])))
            items = [ActivationsItem(image, {layer.layer_path: layer.maps[index]
                                             for layer in computed})
                     for index, image in enumerate(batch)]
            if step.holds:
                step.held += items
                continue
            step.apply(items)
            session.keep(part(session, ActivationsResult, items, concept_vectors=step.vectors))
        if step.holds:
            session.keep(part(session, ActivationsResult, step.fit(),
                              concept_vectors=step.vectors))
        return collect(session, ActivationsResult, concept_vectors=step.vectors,
                       metrics=step.metrics())

