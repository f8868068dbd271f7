"""`cnnviz_cli.reconstruct`: what a layer keeps (inversion) and what drives its units
(deconvnet and guided-backprop projections)."""

from collections.abc import Sequence
from dataclasses import dataclass
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
)

TILE = 128  # pixels: projection tiles are enlarged to at least this
PANEL = 160  # pixels: inversion panels are enlarged to at least this


@dataclass
class ProjectionItem:
    """One image's projections at one layer: `images` (count, height, width, channels)."""

    image: LoadedImage
    layer: str
    channels: list[int]
    activations: list[float]
    positions: list
    images: np.ndarray


@dataclass
class InversionItem:
    """One image reconstructed from each layer's features: `images[layer]` in [0, 1]."""

    image: LoadedImage
    images: dict[str, np.ndarray]
    feature_errors: dict[str, float]


@dataclass(repr=False)
class ReconstructResult(Result):
    """Projections (one item per image and layer) or inversions (one item per image)."""

    command = "reconstruct"

    def _files(self, item):
        method = self.options["method"]
        image = item.image
        if isinstance(item, InversionItem):
            record = {"input": image.name, "method": method, "layers": list(item.images),
                      "feature_errors": item.feature_errors}
            yield File(f"{image.key}/reconstruct-inversion.png", record,
                       partial(_inversion_strip, item))
            return
        record = {"input": image.name, "method": method, "layer": item.layer,
                  "extent": self.options["extent"], "channels": item.channels,
                  "activations": item.activations, "positions": item.positions}
        yield File(f"{image.key}/reconstruct-{method}-{slug(item.layer)}.png", record,
                   partial(_projection_grid, item, method, self.options["extent"]))

    def _series(self, item):
        draw = next(self._files(item)).render
        if isinstance(item, InversionItem):
            yield Series(item.image.key, draw, numbers={
                f"feature_error/{layer}": error for layer, error in item.feature_errors.items()})
            return
        yield Series(f"{item.image.key}/{item.layer}", draw)


def _projection_grid(item: ProjectionItem, method: str, extent: str) -> np.ndarray:
    from cnnviz_cli.render.colour import signed_image
    from cnnviz_cli.render.grid import grid, upscale
    from cnnviz_cli.render.maps import receptive_field_pair

    pixels = item.image.resized
    if extent == "map":
        tiles = [upscale(signed_image(projection), TILE) for projection in item.images]
    else:
        tiles = [receptive_field_pair(pixels, projection) for projection in item.images]
    labels = [f"ch {c} · {v:.3g}" for c, v in zip(item.channels, item.activations, strict=True)]
    if extent == "map":
        tiles, labels = [upscale(pixels, TILE), *tiles], ["input", *labels]
    title = f"{item.image.title} · {method} · {item.layer}"
    return grid(tiles, labels, columns=min(len(tiles), 4), title=title)


def _inversion_strip(item: InversionItem) -> np.ndarray:
    from cnnviz_cli.render.colour import to_uint8
    from cnnviz_cli.render.grid import strip, upscale

    panels = [item.image.resized, *(to_uint8(image) for image in item.images.values())]
    labels = ["input", *(f"{layer} · {error:.2f}" for layer, error in item.feature_errors.items())]
    return strip([upscale(panel, PANEL) for panel in panels], labels,
                 title=f"{item.image.title} · feature inversion (relative feature error)")


def reconstruct(
    model,
    images: ImageSource,
    *,
    method: str = "guided",
    layers: Sequence[str] = (),
    top_channels: int = 8,
    filters: str | Sequence[int] | None = None,
    extent: str = "map",
    steps: int = 300,
    tv: float = 0.1,
    alpha_prior: float = 0.05,
    param: str = "fourier",
    seed: int = 0,
    preprocess=None,
    labels=None,
    out: str | Path | None = None,
    tensorboard: str | Path | None = None,
    progress: bool = False,
    **run,
) -> ReconstructResult:
    """Project a layer's activations to pixels, or invert its features.

    Args:
        model: a name, a model file, a keras.Model or a `load_model` result.
        images: paths, folders, globs, PIL images or uint8 arrays (or a list of these).
        method: `guided` (guided backprop) or `deconvnet` projections of single activations, or
            `inversion` (an image optimised to have the input's features at each layer).
        layers: feature-map layers, `all`, or `auto` (the last convolution of four stages from
            shallow to deep, the default).
        top_channels: projections: how many channels, those of strongest activation.
        filters: projections: these channels instead (`3`, `0-15`, `1,5,9`, a list).
        extent: projections: each channel's whole `map`, or its strongest `unit` only (drawn
            beside the image patch it sees).
        steps, tv, alpha_prior, param, seed: inversion: optimisation steps, weights of the
            total-variation and alpha-norm priors, parameterisation and seed.
        preprocess, labels: as for `load_model`.
        out: write the files while computing (memory stays flat; the result then keeps none).
        tensorboard: also write the pictures and numbers as TensorBoard summaries into
            this log folder (step 0; with checkpoints, the checkpoint's index).
        progress: show a progress bar and messages on stderr.
        **run: size, batch_size, max_pixels, skip_existing, fail_fast, shard, force.

    Returns:
        A ReconstructResult: ProjectionItems (`images` per channel) or InversionItems.
    """
    from cnnviz_cli.api.models import load_model
    from cnnviz_cli.models.layers import resolve_feature_maps
    from cnnviz_cli.specs import filter_spec

    resolved = load_model(model, preprocess=preprocess, labels=labels)
    arguments = {**locals_of(reconstruct, locals()), "layers": list(layers),
                 "filters": filter_spec(filters)}
    session, run = open_session("reconstruct", reconstruct, arguments, resolved, out, progress)
    with session:
        size = resolved.image_size(run["size"])
        chosen = resolve_feature_maps(resolved.model, tuple(layers), "reconstruct", size)
        paths = [info.path for info in chosen]
        shape = (*size, resolved.channels)
        compute = (_inverter(resolved, paths, arguments) if method == "inversion"
                   else _projector(resolved, paths, shape, arguments))
        for batch in session.batches(images, run):
            session.keep(part(session, ReconstructResult, compute(batch)))
        return collect(session, ReconstructResult)


def _pixels(batch: list[LoadedImage]) -> np.ndarray:
    return np.stack([image.resized for image in batch]).astype("float32")


def _projector(resolved, paths: list[str], shape: tuple, options: dict):
    """A function from a batch to its ProjectionItems, per layer and image."""
    from cnnviz_cli.specs import parse_filters
    from cnnviz_cli.techniques.backprop import Projector

    def projectors_at(shape: tuple) -> list:  # one set per size the images are computed at
        return resolved.reuse(("projectors", *paths, options["method"], options["extent"], shape),
                              lambda: [Projector(resolved.model, path, options["method"], shape,
                                                 resolved.preprocess, options["extent"])
                                       for path in paths])

    spec = options["filters"]
    channels_of = {p.layer_path: parse_filters(spec, p.num_channels, p.layer_path) if spec
                   else None for p in projectors_at(shape)}

    def compute(batch: list[LoadedImage]) -> list[ProjectionItem]:
        pixels, items = _pixels(batch), []
        for projector in projectors_at((*pixels.shape[1:3], resolved.channels)):
            result = projector(pixels, options["top_channels"], channels_of[projector.layer_path])
            items += [ProjectionItem(image, result.layer_path, result.channels[i].tolist(),
                                     result.activations[i].tolist(),
                                     result.positions[i].tolist(), result.images[i])
                      for i, image in enumerate(batch)]
        return items

    return compute


def _inverter(resolved, paths: list[str], options: dict):
    """A function from a batch to its InversionItems, one per image."""
    from cnnviz_cli.techniques.reconstruct import InversionConfig, Inverter

    config = InversionConfig(steps=options["steps"], tv=options["tv"],
                             alpha=options["alpha_prior"], parameterization=options["param"],
                             seed=options["seed"])
    inverters = [Inverter(resolved.model, path, resolved.preprocess) for path in paths]

    def compute(batch: list[LoadedImage]) -> list[InversionItem]:
        results = [inverter(_pixels(batch), config) for inverter in inverters]
        return [InversionItem(image, {path: r.images[i] for path, r in zip(paths, results,
                                                                            strict=True)},
                              {path: float(r.feature_errors[i])
                               for path, r in zip(paths, results, strict=True)})
                for i, image in enumerate(batch)]

    return compute
