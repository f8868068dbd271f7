"""`cnnviz_cli.maximize`: images synthesised to excite a layer's filters, or classes."""

from dataclasses import dataclass, replace
from functools import cache, partial
from pathlib import Path

import numpy as np

from cnnviz_cli.api.results import File, Result, Series, slug
from cnnviz_cli.api.run import Plan, Technique, run
from cnnviz_cli.api.tables import (
    CHECKPOINTS,
    MODEL_OPTIONS,
    OUTPUT,
    OUTPUT_OPTIONS,
    RUN,
    filter_option,
    filter_spec,
    integer_pair,
)
from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.options import Option, Table

GRID_TILE = 96  # pixels: small synthesised images are enlarged to this in grids


@dataclass
class MaximizeItem:
    """The synthesised images of one run and what they reached (techniques.maximize)."""

    layer: str | None  # None when classes were maximised
    targets: list[int]
    names: list[str]  # tile captions: filter indices or class labels
    maximized: object  # techniques.maximize.Maximized


@dataclass(repr=False)
class MaximizeResult(Result):
    """`images` (count, height, width, channels) in [0, 1], one per filter or class, with the
    activation (or logit) each reached and that of random noise."""

    command = "maximize"

    @property
    def _item(self) -> MaximizeItem:
        return self.items[0]

    @property
    def images(self) -> np.ndarray:
        return self._item.maximized.images

    @property
    def scores(self) -> np.ndarray:
        return self._item.maximized.scores

    @property
    def noise_scores(self) -> np.ndarray:
        return self._item.maximized.noise_scores

    @property
    def targets(self) -> list[int]:
        return self._item.targets

    def _files(self, item: MaximizeItem):
        from cnnviz_cli.render.colour import to_uint8

        result, layer = item.maximized, item.layer
        if layer is None:
            labels, title, extra = _class_captions(result, item.names)
            files = [f"maximize-class-{slug(name)}.png" for name in item.names]
            stem = "maximize-classes"
        else:
            labels = [f"{i} · {ratio:.0f}x" if ratio < 999.5 else f"{i} · >999x"
                      for i, ratio in zip(item.names, result.ratios, strict=True)]
            stem, title, extra = f"maximize-{slug(layer)}", f"{layer} (x noise)", {}
            files = [f"{stem}/filter-{name}.png" for name in item.names]
        summary = {"layer": layer, "targets": item.targets, "activations": result.scores,
                   "noise_activations": result.noise_scores}
        for index, name in enumerate(files):
            yield File(name, {"layer": layer, **extra, **result.record(index)},
                       partial(to_uint8, result.images[index]))
        yield File(f"{stem}-grid.png", summary, partial(_grid, result.images, labels, title))
        if result.snapshots is not None:
            every, steps = self.options["gif"], self.options["steps"]
            numbers = [*range(0, steps, every), steps]
            yield File(f"{stem}.gif", summary, partial(_frames, result.snapshots, numbers,
                                                       labels, title), kind="gif")

    def _series(self, item: MaximizeItem):
        scores = item.maximized.scores
        yield Series(item.layer or "classes", lambda: self._picture(item),
                     numbers={"mean_score": float(np.mean(scores))})

    def _picture(self, item: MaximizeItem) -> np.ndarray:
        return next(file for file in self._files(item) if file.name.endswith("-grid.png")).render()


def _class_captions(result, names: list[str]) -> tuple[list[str], str, dict]:
    """(grid labels, grid title, extra record fields) of maximised classes: their probability,
    or for a head without one (logits only) their logit, the probability recorded as null."""
    if result.probabilities is None:
        return ([f"{name} logit {score:.2f}"
                 for name, score in zip(names, result.scores, strict=True)],
                "classes (logit)", {"probability": None})
    return ([f"{name} {p:.2f}" for name, p in zip(names, result.probabilities, strict=True)],
            "classes (probability)", {})


def _grid(images: np.ndarray, labels: list[str], title: str) -> np.ndarray:
    from cnnviz_cli.render.colour import to_uint8
    from cnnviz_cli.render.grid import grid, upscale

    return grid([upscale(to_uint8(image), GRID_TILE) for image in images], labels, title=title)


def _frames(snapshots, steps: list[int], labels: list[str], title: str) -> list[np.ndarray]:
    return [_grid(frame, labels, f"{title} · step {step}")
            for step, frame in zip(steps, snapshots, strict=True)]


WHAT = "What to maximise"
OPTIMISATION = "Optimisation"
OBJECTIVE = "Objective of a filter's images"
EXAMPLES = "Dataset examples (--from-images)"


def _position(value) -> tuple[int, int] | None:
    """`X,Y` (or a pair) -> (column, row)."""
    position = None if value is None else integer_pair(value, ",")
    if value is not None and position is None:
        raise CnnvizError(f"--position expects X,Y such as 3,4, but got {value!r}.")
    return position


def _synthesis(settings: dict) -> bool:
    return not settings["from_images"]


def _filters_chosen(settings: dict) -> bool:
    return not settings["classes"]


@cache
def table() -> Table:
    """The options of `cnnviz maximize` and `cnnviz_cli.maximize`."""
    from cnnviz_cli.api.objectives import OBJECTIVES
    from cnnviz_cli.specs import DIRECTIONS, TASKS

    synthesis = {"applies": _synthesis, "when": "without --from-images (dataset examples are "
                 "not synthesised)"}
    heads = {"applies": lambda settings: _synthesis(settings) and bool(settings["classes"]),
             "when": "with --class (they say what the class scores are), without "
             "--from-images", "group": WHAT, "show_default": False}

    def objective(name: str) -> dict:
        return {"applies": lambda settings: _synthesis(settings)
                and settings["objective"] == name, "when": f"with --objective {name}",
                "group": OBJECTIVE, "show_default": False}

    examples = {"applies": lambda settings: not _synthesis(settings),
                "when": "with --from-images (they choose dataset examples)", "group": EXAMPLES}
    size, batch_size, shard = (next(option for option in RUN if option.name == name)
                               for name in ("size", "batch_size", "shard"))
    own = (
        Option("layer", "auto", "Layer whose filters to maximise; auto = the deepest map "
               "larger than 1x1 before pooling.", short="-l", metavar="LAYER", group=WHAT,
               applies=_filters_chosen, when="without --class (which maximises classes "
               "instead of filters)"),
        filter_option("Filters to maximise [default: the first 16].", WHAT,
                      applies=lambda settings: _filters_chosen(settings)
                      and settings["objective"] != "direction",
                      when="without --class (which maximises classes instead of filters) and "
                      "without --objective direction (which maximises one direction of the "
                      "whole layer)"),
        Option("classes", (), "Maximise a class score instead of filters (index or label).",
               multiple=True, flag="--class", metavar="CLASS", group=WHAT,
               settle=lambda values: [str(value) for value in values], **synthesis),
        Option("task", None, "What the output is [default: from its final activation and "
               "shape, as for cam].", TASKS, **heads),
        Option("direction", None, "A regression head: maximise (up) or minimise (down) the "
               "output [default: up].", DIRECTIONS, **heads),
        Option("param", "fourier", "Image parameterisation: 1/f spectrum with decorrelated "
               "colour, or free pixels.", ("fourier", "pixel"), group=OPTIMISATION,
               **synthesis),
        Option("transforms", "standard", "Random pad, jitter, scale and rotation every step, "
               "fading out over the run.", ("standard", "none"), group=OPTIMISATION,
               **synthesis),
        Option("l2", 0.0, "Weight of the L2 penalty (distance from grey).", float, low=0,
               group=OPTIMISATION, **synthesis),
        Option("tv", 0.0, "Weight of the total-variation penalty.", float, low=0,
               group=OPTIMISATION, **synthesis),
        Option("blur", 0.0, "Weight of the blur penalty (distance from a blurred copy).",
               float, low=0, group=OPTIMISATION, **synthesis),
        Option("steps", 256, "Optimisation steps (all in one compiled loop).", int, low=1,
               group=OPTIMISATION, **synthesis),
        Option("lr", 0.05, "Adam step size.", float, low=0, open_low=True, group=OPTIMISATION,
               **synthesis),
        size,
        Option("seed", 0, "Seeds the starting image and the transforms: same seed, same "
               "bytes.", int, group=OPTIMISATION, **synthesis),
        Option("gif", 0, "Also write an animation of the optimisation, one frame every K "
               "steps (0: none).", int, low=0, metavar="K", group=OUTPUT, **synthesis),
        replace(batch_size, default=16, help="Filters or classes optimised together in one "
                "compiled loop (with --from-images: images per pass)."),
        replace(CHECKPOINTS, **synthesis),
        Option("objective", "channel", "What a filter's images maximise: its mean activation, "
               "one unit (--position) or a direction in channel space.", OBJECTIVES,
               group=OBJECTIVE, **synthesis),
        Option("position", None, "The unit of --objective neuron, in feature-map coordinates "
               "[default: the centre].", metavar="X,Y", settle=_position,
               text=lambda position: f"{position[0]},{position[1]}", **objective("neuron")),
        Option("direction_vector", None, "The vector (one value per channel) of --objective "
               "direction (in Python also an array).", Path, metavar="FILE.npy",
               **objective("direction")),
        Option("direction_images", (), "--objective direction along the mean activation of "
               "these images.", multiple=True, metavar="IMAGES", **objective("direction")),
        Option("diversity", 0.0, "Weight of the penalty on the Gram similarity of a filter's "
               "--samples.", float, low=0, group=OBJECTIVE, **synthesis),
        Option("samples", 1, "Images per filter (made different by --diversity).", int, low=1,
               group=OBJECTIVE, **synthesis),
        Option("from_images", (), "Instead of synthesising, stream these images (a folder, "
               "files or globs) and show each filter's dataset examples.", multiple=True,
               metavar="IMAGES", group=EXAMPLES),
        Option("top", 9, "Dataset examples per filter: the K images of strongest activation.",
               int, low=1, metavar="K", **examples),
        Option("projection", "deconvnet", "How each example's activation is projected to "
               "pixels.", ("deconvnet", "guided"), **examples),
        replace(shard, help="Use only slice K of N of the sorted --from-images; `cnnviz "
                "report` merges the shards' folders into the global top K.", **examples),
    )
    return Table("maximize", MODEL_OPTIONS, own, OUTPUT_OPTIONS)


def maximize(model, settings: dict | None = None, /, *, progress: bool = False,
             **options) -> MaximizeResult:
    """Synthesise images that excite filters of a layer, or class scores, the most; or show
    the dataset examples that excite the filters most (`from_images`).

    Args:
        model, settings, progress: as for `cnnviz_cli.cam` (progress: a spinner).
        **options: the options of `cnnviz maximize` by their keyword (`cnnviz maximize
            --help`, or `cnnviz_cli.api.maximize.table()`): layer, filters (`0-15`, a list of
            indices), classes (instead of filters), task, direction; param, transforms, l2, tv,
            blur, steps, lr, size, seed, gif, batch_size; objective, position,
            direction_vector (a .npy file or an array), direction_images, diversity, samples;
            from_images (paths, folders or globs), top, projection, shard; checkpoints, out...

    Returns:
        A MaximizeResult with `images`, `scores`, `noise_scores` and `targets`; with
        `from_images` an ExamplesResult with `examples` (filter -> best examples).
    """
    given = {**(settings or {}), **options}
    return run(TECHNIQUE, model, given.get("from_images") or None, given, progress)


def _layer(resolved, settings: dict, size: tuple[int, int]):
    """The feature-map layer the options name, and the filters chosen there."""
    from cnnviz_cli.models.layers import find_feature_map, last_feature_map
    from cnnviz_cli.specs import parse_filters

    layer = settings["layer"]
    info = (last_feature_map(resolved.model, size) if layer == "auto"
            else find_feature_map(resolved.model, layer))
    return info, parse_filters(filter_spec(settings), int(info.output_shape[-1]), info.path)


def _prepare(resolved, settings: dict, run: dict, session) -> Plan:
    """The synthesised images of the classes or filters; or the dataset examples' plan."""
    from cnnviz_cli.api.heads import model_head
    from cnnviz_cli.api.objectives import unit_objective
    from cnnviz_cli.techniques.maximize import filter_objectives, maximize_classes
    from cnnviz_cli.techniques.maximize import maximize as run_maximize

    shape = (*resolved.image_size(settings["size"]), resolved.channels)
    if settings["from_images"]:
        from cnnviz_cli.api.examples import examples_plan

        return examples_plan(resolved, *_layer(resolved, settings, shape[:2]), settings)
    config = _config(settings, min(shape[:2]))
    if settings["classes"]:
        head = model_head(resolved, 0, settings["task"], settings["direction"])
        targets = [resolved.class_index(spec, head.num_classes, head.labels)
                   for spec in settings["classes"]]
        with session.status(f"Maximising {len(targets)} classes"):
            result = maximize_classes(resolved.model, resolved.preprocess, targets, shape,
                                      config, head)
        item = MaximizeItem(None, targets, [resolved.label(i, head.labels) for i in targets],
                            result)
    else:
        info, chosen = _layer(resolved, settings, shape[:2])
        unit = unit_objective(resolved, info, shape, settings, chosen)
        diversity = settings["diversity"]
        with session.status(f"Maximising {len(unit.targets)} images at {info.path}"):
            optimised, measure = resolved.reuse(
                ("maximize", info.path, resolved.preprocess, unit.key, diversity),
                lambda: filter_objectives(resolved.model, info.path, resolved.preprocess,
                                          unit.score, diversity))
            result = run_maximize(optimised, unit.targets, shape, unit.config(config), measure)
        item = MaximizeItem(info.path, unit.targets.tolist(), unit.names, result)
    return Plan(end=lambda: [item], retain=True)


def _config(options: dict, side: int):
    """The optimisation settings the options ask for."""
    from cnnviz_cli.techniques.maximize import MaximizeConfig
    from cnnviz_cli.techniques.optim import OptimConfig, Regularizers, Transforms

    transforms = Transforms.standard(side) if options["transforms"] == "standard" else None
    regularizers = Regularizers(options["l2"], options["tv"], options["blur"])
    optim = OptimConfig(options["steps"], options["lr"], transforms=transforms, anneal=True,
                        regularizers=regularizers, snapshot_every=options["gif"],
                        seed=options["seed"])
    return MaximizeConfig(optim, options["param"], options["batch_size"])


TECHNIQUE = Technique(table, MaximizeResult, _prepare, images="from_images",
                      not_with_checkpoints=("gif",))
