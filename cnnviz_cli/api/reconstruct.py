"""`cnnviz_cli.reconstruct`: what a layer keeps (inversion) and what drives its units
(deconvnet and guided-backprop projections)."""

from dataclasses import dataclass
from functools import cache, partial

import numpy as np

from cnnviz_cli.api.inputs import ImageSource, LoadedImage
from cnnviz_cli.api.results import File, Result, Series, slug
from cnnviz_cli.api.run import Plan, Technique, run
from cnnviz_cli.api.tables import (
    IMAGES,
    MODEL_OPTIONS,
    OUTPUT_OPTIONS,
    RUN,
    filter_option,
    filter_spec,
)
from cnnviz_cli.options import Option, Table

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


PROJECTIONS = "Projections (--method guided, deconvnet)"
INVERSION = "Inversion (--method inversion)"


def _projecting(settings: dict) -> bool:
    return settings["method"] != "inversion"


def _inverting(settings: dict) -> bool:
    return settings["method"] == "inversion"


@cache
def table() -> Table:
    """The options of `cnnviz reconstruct` and `cnnviz_cli.reconstruct`."""
    what = "What to reconstruct"
    projected = {"applies": _projecting, "when": "with --method guided or deconvnet"}
    inverted = {"applies": _inverting, "when": "with --method inversion", "group": INVERSION}
    own = (
        Option("method", "guided", "guided backprop or deconvnet projections of single "
               "activations, or feature inversion (an image optimised to have the input's "
               "features).", ("guided", "deconvnet", "inversion"), group=what),
        Option("layers", (), "Feature-map layer, `all` (every feature map) or `auto` (the "
               "last convolution of four stages from shallow to deep, the default).",
               multiple=True, flag="--layer", short="-l", metavar="LAYER", group=what),
        Option("top_channels", 8, "How many channels to project, those of strongest "
               "activation, one panel each.", int, low=1, group=PROJECTIONS,
               applies=lambda settings: _projecting(settings) and not settings["filters"],
               when="without --filter (which names the channels instead) and with --method "
               "guided or deconvnet"),
        filter_option("Project these channels instead of the strongest ones.", PROJECTIONS,
                      **projected),
        Option("extent", "map", "Each channel's whole feature map, or only its strongest "
               "activation (as Zeiler & Fergus; drawn beside the image patch it sees).",
               ("map", "unit"), group=PROJECTIONS, **projected),
        Option("steps", 300, "Optimisation steps.", int, low=1, **inverted),
        Option("tv", 0.1, "Weight of the total-variation prior.", float, low=0, **inverted),
        Option("alpha_prior", 0.05, "Weight of the alpha-norm prior (alpha = 6).", float, low=0,
               **inverted),
        Option("param", "fourier", "Image parameterisation, a 1/f spectrum with decorrelated "
               "colour (smoother), or free pixels.", ("fourier", "pixel"), **inverted),
        Option("seed", 0, "Seeds the starting image (same seed, same bytes).", int, **inverted),
    )
    return Table("reconstruct", IMAGES, RUN, MODEL_OPTIONS, own, OUTPUT_OPTIONS)


def reconstruct(model, images: ImageSource, settings: dict | None = None, /, *,
                progress: bool = False, **options) -> ReconstructResult:
    """Project a layer's activations to pixels, or invert its features.

    Args:
        model, images, settings, progress: as for `cnnviz_cli.cam`.
        **options: the options of `cnnviz reconstruct` by their keyword (`cnnviz reconstruct
            --help`, or `cnnviz_cli.api.reconstruct.table()`): method (guided, deconvnet or
            inversion), layers; projections: top_channels, filters (`0-15`, a list), extent;
            inversion: steps, tv, alpha_prior, param, seed; out, size, batch_size, ...

    Returns:
        A ReconstructResult: ProjectionItems (`images` per channel) or InversionItems.
    """
    return run(TECHNIQUE, model, images, {**(settings or {}), **options}, progress)


def _prepare(resolved, settings: dict, run: dict, session) -> Plan:
    """Per batch: the projections, or inversions, of every chosen layer."""
    from cnnviz_cli.models.layers import resolve_feature_maps

    size = resolved.image_size(run["size"])
    chosen = resolve_feature_maps(resolved.model, tuple(settings["layers"]), "reconstruct", size)
    paths = [info.path for info in chosen]
    shape = (*size, resolved.channels)
    return Plan(_inverter(resolved, paths, settings) if _inverting(settings)
                else _projector(resolved, paths, shape, settings))


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

    spec = filter_spec(options)
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


TECHNIQUE = Technique(table, ReconstructResult, _prepare)
