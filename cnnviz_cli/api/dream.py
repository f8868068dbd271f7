"""`cnnviz_cli.dream`: DeepDream, a photo changed so that some layers respond to it more."""

from dataclasses import dataclass, replace
from functools import cache, partial

import numpy as np

from cnnviz_cli.api.inputs import ImageSource, LoadedImage
from cnnviz_cli.api.results import File, Result
from cnnviz_cli.api.run import Plan, Technique, run
from cnnviz_cli.api.tables import IMAGES, MODEL_OPTIONS, OUTPUT, OUTPUT_OPTIONS, RUN
from cnnviz_cli.options import Option, Table

GIF_SIDE = 384  # pixels: the longer side of the animation's frames


@dataclass
class DreamItem:
    """One dreamed photo: `dreamed` is uint8 at the input's resolution."""

    image: LoadedImage
    dreamed: np.ndarray
    dream: object  # techniques.dream.Dreamed: objective before/after, octaves, frames
    terms: list[dict]  # the objective's layers, channels and weights


@dataclass(repr=False)
class DreamResult(Result):
    """Per image the dreamed photo (`images`, uint8) and the objective before and after."""

    command = "dream"

    @property
    def images(self) -> list[np.ndarray]:
        return [item.dreamed for item in self.items]

    def _files(self, item: DreamItem):
        from cnnviz_cli.io.images import resize
        from cnnviz_cli.render.colour import to_uint8

        options, image, result = self.options, item.image, item.dream
        record = {"input": image.name, "layers": item.terms,
                  "objective_before": result.objective_before,
                  "objective_after": result.objective_after,
                  "octave_shapes": result.octave_shapes}
        yield File(f"{image.key}/dream.png", record, lambda: item.dreamed)
        if options["blend"] is not None:
            share = options["blend"]
            yield File(f"{image.key}/dream-blend.png", {**record, "blend": share},
                       partial(_blend, item.dreamed, image.original, share))
        if options["gif"]:
            height, width = image.original.shape[:2]
            side = GIF_SIDE / max(height, width)
            shape = (round(height * side), round(width * side))
            yield File(f"{image.key}/dream.gif", record,
                       lambda: [resize(to_uint8(frame), shape) for frame in result.frames],
                       kind="gif")


def _dream_geometry(size, multiple: int):
    """Dreams work on the photo itself, whatever the model's input size: at its own size (no
    --size, or native), its longer side at N, or HxW; rounded to the network's multiple.
    `size` is the settled --size (tables.parse_size)."""
    from cnnviz_cli.models.geometry import Geometry

    if isinstance(size, int):
        return Geometry((None, None), size, multiple=multiple)
    return Geometry((None, None), 0, size or "native", multiple=multiple)


def _blend(dreamed: np.ndarray, original: np.ndarray, share: float) -> np.ndarray:
    return (share * dreamed + (1.0 - share) * original).round().astype("uint8")


@cache
def table() -> Table:
    """The options of `cnnviz dream` and `cnnviz_cli.dream`."""
    what = "What to dream"
    own = (
        Option("layers", (), "A layer to amplify, optionally one channel (an integer) and a "
               "weight (with a decimal point): block3_conv2, block3_conv2:7, block4_conv:1.5, "
               "or `auto` (the output of the stage before the last, the default).",
               multiple=True, flag="--layer", short="-l", metavar="LAYER[:CHANNEL][:WEIGHT]",
               group=what),
        Option("octaves", 4, "Scales to dream at, from small to the photo's own size.", int,
               low=1, group=what),
        Option("octave_scale", 1.4, "Size ratio between octaves.", float, low=1.0,
               open_low=True, group=what),
        Option("steps", 20, "Gradient steps per octave.", int, low=1, group=what),
        Option("step_size", 0.01, "Step of a normalised gradient, in units of the pixel range.",
               float, low=0, open_low=True, group=what),
        Option("tile", 512, "Tile side: gradients are computed tile by tile (randomly rolled "
               "each step), so memory stays that of one tile. Fixed-size models use their "
               "input size.", int, low=16, group=what),
        Option("seed", 0, "Seeds the random roll of the tiles (same seed, same bytes).", int,
               group=what),
        Option("blend", None, "Also write dream-blend.png: this share of the dream over the "
               "original.", float, low=0, high=1, group=OUTPUT, show_default=False),
        Option("gif", 0, "Also write dream.gif, the dream growing octave by octave, a frame "
               "every K steps (0: none).", int, low=0, metavar="K", group=OUTPUT),
    )
    return Table("dream", IMAGES, RUN, MODEL_OPTIONS, own, OUTPUT_OPTIONS)


def dream(model, images: ImageSource, settings: dict | None = None, /, *,
          progress: bool = False, **options) -> DreamResult:
    """DeepDream: change photos so that some layers respond to them more.

    Dreams at the photo's own resolution (or with its longer side at `size`), octave by octave.

    Args:
        model, images, settings, progress: as for `cnnviz_cli.cam`.
        **options: the options of `cnnviz dream` by their keyword (`cnnviz dream --help`, or
            `cnnviz_cli.api.dream.table()`): layers (specs `LAYER[:CHANNEL][:WEIGHT]`),
            octaves, octave_scale, steps, step_size, tile, blend, gif, seed, out, size (the
            longer side to dream at), batch_size, preprocess, labels, ...

    Returns:
        A DreamResult with the dreamed `images`.
    """
    return run(TECHNIQUE, model, images, {**(settings or {}), **options}, progress)


def _prepare(resolved, settings: dict, run: dict, session) -> Plan:
    """Per batch: each photo dreamed at its own resolution (or its longer side at --size)."""
    from cnnviz_cli.io.images import resize
    from cnnviz_cli.models.layers import auto_layers, find_feature_map
    from cnnviz_cli.render.colour import to_uint8
    from cnnviz_cli.techniques.dream import DreamConfig, Dreamer, DreamLayer

    auto = auto_layers(resolved.model, "dream", resolved.image_size())[0].path
    terms = [DreamLayer.parse(auto if spec == "auto" else spec)
             for spec in settings["layers"] or ["auto"]]
    terms = [replace(term, path=find_feature_map(resolved.model, term.path).path)
             for term in terms]
    config = DreamConfig(*(settings[name] for name in ("octaves", "octave_scale", "steps",
                                                       "step_size", "tile", "gif", "seed")),
                         resolved.geometry().multiple)
    dreamer = Dreamer(resolved.model, terms, resolved.preprocess, config)

    def each(batch: list[LoadedImage]) -> list[DreamItem]:
        items = []
        for image in batch:
            result = dreamer(image.resized)
            dreamed = resize(to_uint8(result.image), image.original.shape[:2])
            items.append(DreamItem(image, dreamed, result, [vars(t) for t in terms]))
        return items

    return Plan(each, geometry=_dream_geometry(run["size"], config.multiple))


TECHNIQUE = Technique(table, DreamResult, _prepare)
