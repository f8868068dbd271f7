"""`cnnviz_cli.dream`: DeepDream, a photo changed so that some layers respond to it more."""

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from cnnviz_cli.api.inputs import ImageSource, LoadedImage
from cnnviz_cli.api.results import File, Result, collect, locals_of, open_session, part

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
    --size, or native), its longer side at N, or HxW; rounded to the network's multiple."""
    from cnnviz_cli.api.tables import parse_size
    from cnnviz_cli.models.geometry import Geometry

    size = parse_size(size)
    if isinstance(size, int):
        return Geometry((None, None), size, multiple=multiple)
    return Geometry((None, None), 0, size or "native", multiple=multiple)


def _blend(dreamed: np.ndarray, original: np.ndarray, share: float) -> np.ndarray:
    return (share * dreamed + (1.0 - share) * original).round().astype("uint8")


def dream(
    model,
    images: ImageSource,
    *,
    layers: Sequence[str] = (),
    octaves: int = 4,
    octave_scale: float = 1.4,
    steps: int = 20,
    step_size: float = 0.01,
    tile: int = 512,
    blend: float | None = None,
    gif: int = 0,
    seed: int = 0,
    preprocess=None,
    labels=None,
    out: str | Path | None = None,
    tensorboard: str | Path | None = None,
    progress: bool = False,
    **run,
) -> DreamResult:
    """DeepDream: change photos so that some layers respond to them more.

    Dreams at the photo's own resolution (or with its longer side at `size`), octave by octave.

    Args:
        model: a name, a model file, a keras.Model or a `load_model` result.
        images: paths, folders, globs, PIL images or uint8 arrays (or a list of these).
        layers: specs `LAYER[:CHANNEL][:WEIGHT]` such as `block3_conv2:7` or `block4_conv:1.5`
            `auto` = the output of the stage before the last (the default).
        octaves, octave_scale: scales to dream at, and the size ratio between them.
        steps, step_size: gradient steps per octave and the step of a normalised gradient.
        tile: gradients are computed tile by tile, so memory stays that of one tile.
        blend: also draw dream-blend.png, this share of the dream over the original.
        gif: also draw the dream growing, a frame every `gif` steps (0: none).
        seed: seeds the tile offsets; same seed, same bytes.
        preprocess, labels: as for `load_model`.
        out: write the files while computing (memory stays flat; the result then keeps none).
        tensorboard: also write the pictures and numbers as TensorBoard summaries into
            this log folder (step 0; with checkpoints, the checkpoint's index).
        progress: show a progress bar and messages on stderr.
        **run: size (the longer side to dream at), batch_size, max_pixels, skip_existing,
            fail_fast, shard, force.

    Returns:
        A DreamResult with the dreamed `images`.
    """
    from dataclasses import replace

    from cnnviz_cli.api.formats import check_command
    from cnnviz_cli.api.models import load_model
    from cnnviz_cli.io.images import resize
    from cnnviz_cli.models.layers import auto_layers, find_feature_map
    from cnnviz_cli.render.colour import to_uint8
    from cnnviz_cli.techniques.dream import DreamConfig, Dreamer, DreamLayer

    resolved = load_model(model, preprocess=preprocess, labels=labels)
    check_command(resolved, "dream")  # before looking for layers
    specs = list(layers) or ["auto"]
    auto = auto_layers(resolved.model, "dream", resolved.image_size())[0].path
    terms = [DreamLayer.parse(auto if spec == "auto" else spec) for spec in specs]
    terms = [replace(term, path=find_feature_map(resolved.model, term.path).path)
             for term in terms]
    arguments = {**locals_of(dream, locals()), "layers": list(layers)}
    session, run = open_session("dream", dream, arguments, resolved, out, progress)
    with session:
        config = DreamConfig(octaves, octave_scale, steps, step_size, tile, gif, seed,
                             resolved.geometry().multiple)
        dreamer = Dreamer(resolved.model, terms, resolved.preprocess, config)
        geometry = _dream_geometry(run["size"], config.multiple)
        for batch in session.batches(images, run, geometry):
            items = []
            for image in batch:
                height, width = image.original.shape[:2]
                result = dreamer(image.resized)
                dreamed = resize(to_uint8(result.image), (height, width))
                items.append(DreamItem(image, dreamed, result, [vars(t) for t in terms]))
            session.keep(part(session, DreamResult, items))
        return collect(session, DreamResult)
