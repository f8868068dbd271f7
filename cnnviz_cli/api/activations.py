"""`cnnviz_cli.activations`: the feature maps an image produces, layer by layer."""

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from cnnviz_cli.api.inputs import ImageSource, LoadedImage
from cnnviz_cli.api.results import (
    File,
    Result,
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


@dataclass(repr=False)
class ActivationsResult(Result):
    """Feature maps per image and layer (`items[i].maps[layer]`), with their grids."""

    command = "activations"

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

    def _picture(self, item: ActivationsItem) -> np.ndarray:
        return stack([file.render() for file in self._files(item)
                      if file.record["kind"] == "grid"])


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
    preprocess=None,
    labels=None,
    out: str | Path | None = None,
    progress: bool = False,
    **run,
) -> ActivationsResult:
    """The feature maps images produce at some layers, from one compiled forward pass.

    Args:
        model: a name, a model file, a keras.Model or a `load_model` result.
        images: paths, folders, globs, PIL images or uint8 arrays (or a list of these).
        layers: layer names, nested paths (base/conv1), negative indices, `all` or `auto`
            [default: four feature-map layers spread from shallow to deep].
        max_channels: feature maps drawn per grid (strongest first with order="mean").
        order: `mean` (strongest mean activation first) or `index`.
        scale: `shared` (one colour scale per grid) or `each` (one per feature map).
        colormap: a matplotlib colour map name.
        alpha: opacity of the overlay's heat colours.
        preprocess, labels: as for `load_model`.
        out: write the files while computing (memory stays flat; the result then keeps none).
        progress: show a progress bar and messages on stderr.
        **run: size, batch_size (8), max_pixels, skip_existing, fail_fast, shard (K, N),
            force.

    Returns:
        An ActivationsResult; `save(out)` writes the grids and overlays the command writes.
    """
    from cnnviz_cli.api.models import load_model
    from cnnviz_cli.models.layers import resolve_feature_maps
    from cnnviz_cli.techniques.activations import ActivationExtractor

    resolved = load_model(model, preprocess=preprocess, labels=labels)
    arguments = {**locals_of(activations, locals()), "layers": tuple(layers)}
    session, run = open_session("activations", activations, arguments, resolved, out, progress)
    with session:
        chosen = resolve_feature_maps(resolved.model, tuple(layers))
        height, width = resolved.image_size(run["size"])
        extractor = ActivationExtractor(resolved.model, [info.path for info in chosen],
                                        (height, width, resolved.channels))
        for batch in session.batches(images, run):
            computed = extractor(resolved.prepare(np.stack([image.resized for image in batch])))
            items = [ActivationsItem(image, {layer.layer_path: layer.maps[index]
                                             for layer in computed})
                     for index, image in enumerate(batch)]
            session.keep(part(session, ActivationsResult, items))
        return collect(session, ActivationsResult)

