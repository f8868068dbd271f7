"""`cnnviz_cli.maximize`: images synthesised to excite a layer's filters, or classes."""

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

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


def maximize(
    model,
    *,
    layer: str = "auto",
    filters: str | Sequence[int] | None = None,
    classes: Sequence[str | int] = (),
    task: str | None = None,
    direction: str | None = None,
    param: str = "fourier",
    transforms: str = "standard",
    l2: float = 0.0,
    tv: float = 0.0,
    blur: float = 0.0,
    steps: int = 256,
    lr: float = 0.05,
    size: int | None = None,
    seed: int = 0,
    gif: int = 0,
    batch_size: int = 16,
    objective: str = "channel",
    position: tuple[int, int] | None = None,
    direction_vector: str | Path | np.ndarray | None = None,
    direction_images=None,
    diversity: float = 0.0,
    samples: int = 1,
    from_images=None,
    top: int = 9,
    projection: str = "deconvnet",
    shard: tuple[int, int] | None = None,
    preprocess=None,
    labels=None,
    checkpoints: Sequence[str | Path] = (),
    out: str | Path | None = None,
    tensorboard: str | Path | None = None,
    progress: bool = False,
    force: bool = False,
) -> MaximizeResult:
    """Synthesise images that excite filters of a layer, or class scores, the most.

    Args:
        model: a name, a model file, a keras.Model or a `load_model` result.
        layer: the feature-map layer whose filters to maximise; `auto` = the deepest one
            larger than 1x1 before pooling.
        filters: `3`, `0-15`, `1,5,9`, `all` or a list of indices [default: the first 16].
        classes: maximise these class scores (indices or labels) instead of filters.
        task, direction: what the (first) output is and, for regression, whether to raise
            (up) or lower (down) it; see `cam`.
        param: `fourier` (1/f spectrum, decorrelated colour) or `pixel`.
        transforms: `standard` (random pad, jitter, scale, rotation, fading out) or `none`.
        l2, tv, blur: weights of the L2, total-variation and blur penalties.
        steps, lr: Adam steps (one compiled loop) and step size.
        size: the image side for models that take any size [default: the model's].
        seed: seeds the start image and the transforms; same seed, same bytes.
        gif: also draw an animation, one frame every `gif` steps (0: none).
        batch_size: filters or classes optimised together.
        objective, position, direction_vector, direction_images, diversity, samples: what a filter's
            images maximise (see `api.objectives.unit_objective`), and how many per filter.
        from_images: instead of synthesising, stream these images (paths, folders, globs,
            PIL images or arrays) and keep each filter's `top` dataset examples: the patches
            of strongest activation beside their `projection` (`deconvnet` or `guided`);
            `shard` (K, N) takes slice K of N of them (merge with `cnnviz report`).
        preprocess, labels: as for `load_model`.
        checkpoints: model or weights files saved during training, in order: the technique
            runs on each; one strip (a row per checkpoint) and GIF per picture followed.
        out: also write the files the command writes into this folder.
        tensorboard: also write the pictures and numbers as TensorBoard summaries into
            this log folder (step 0; with checkpoints, the checkpoint's index).
        progress: show a spinner and messages on stderr.
        force: replace the outputs of an earlier run with other options in `out`.

    Returns:
        A MaximizeResult with `images`, `scores`, `noise_scores` and `targets`; with
        `from_images` an ExamplesResult with `examples` (filter -> best examples).
    """
    from cnnviz_cli.api.evolution import over_checkpoints, refuse_with_checkpoints
    from cnnviz_cli.api.heads import model_head
    from cnnviz_cli.api.models import load_model
    from cnnviz_cli.api.objectives import unit_objective
    from cnnviz_cli.errors import CnnvizError
    from cnnviz_cli.models.layers import find_feature_map, last_feature_map
    from cnnviz_cli.specs import filter_spec, parse_filters
    from cnnviz_cli.techniques.maximize import filter_objectives, maximize_classes
    from cnnviz_cli.techniques.maximize import maximize as run_maximize

    resolved = load_model(model, preprocess=preprocess, labels=labels)
    arguments = locals_of(maximize, locals())
    if isinstance(direction_vector, np.ndarray):
        arguments["direction_vector"] = "<array in memory>"
    if from_images is not None:
        return _examples(resolved, arguments, out, progress)
    if (top, projection, shard) != (9, "deconvnet", None):
        raise CnnvizError("--top, --projection and --shard choose dataset examples; they go "
                          "with --from-images.")
    if classes and (layer != "auto" or filters is not None):
        raise CnnvizError("--layer and --filter choose filters to maximise; they cannot go with "
                          "--class, which maximises classes instead.")
    if not classes and (task is not None or direction is not None):
        raise CnnvizError("--task and --direction say what class scores are; they go with "
                          "--class.")
    if objective == "direction" and filters is not None:
        raise CnnvizError("--filter chooses filters, but --objective direction maximises one "
                          "direction of the whole layer; leave --filter out.")
    filters = filter_spec(filters)
    arguments.update(filters=filters, classes=[str(c) for c in classes])
    if checkpoints:
        refuse_with_checkpoints(arguments, ("gif",))
        return over_checkpoints(maximize, resolved, arguments, checkpoints, out, progress)
    session, _ = open_session("maximize", maximize, arguments, resolved, out, progress)
    with session:
        shape = (*resolved.image_size(size), resolved.channels)
        config = _config(arguments, min(shape[:2]))
        if classes:
            head = model_head(resolved, 0, task, direction)
            targets = [resolved.class_index(spec, head.num_classes, head.labels)
                       for spec in classes]
            with session.status(f"Maximising {len(targets)} classes"):
                result = maximize_classes(resolved.model, resolved.preprocess, targets, shape,
                                          config, head)
            item = MaximizeItem(None, targets, [resolved.label(i, head.labels) for i in targets],
                                result)
        else:
            info = (last_feature_map(resolved.model, shape[:2]) if layer == "auto"
                    else find_feature_map(resolved.model, layer))
            chosen = parse_filters(filters, int(info.output_shape[-1]), info.path)
            unit = unit_objective(resolved, info, shape,
                                  {**arguments, "direction_vector": direction_vector}, chosen)
            with session.status(f"Maximising {len(unit.targets)} images at {info.path}"):
                optimised, measure = resolved.reuse(
                    ("maximize", info.path, resolved.preprocess, unit.key, diversity),
                    lambda: filter_objectives(resolved.model, info.path, resolved.preprocess,
                                              unit.score, diversity))
                result = run_maximize(optimised, unit.targets, shape, unit.config(config),
                                      measure)
            item = MaximizeItem(info.path, unit.targets.tolist(), unit.names, result)
        session.keep(part(session, MaximizeResult, [item]), retain=True)
        return collect(session, MaximizeResult)


def _examples(resolved, arguments: dict, out, progress: bool):
    """The dataset examples of `maximize(from_images=...)` (see api.examples)."""
    import inspect

    from cnnviz_cli.api.examples import (
        SYNTHESIS_ONLY,
        dataset_examples,
        refuse_synthesis_options,
    )
    from cnnviz_cli.api.results import image_words
    from cnnviz_cli.models.layers import find_feature_map, last_feature_map
    from cnnviz_cli.specs import filter_spec, parse_filters

    defaults = {name: parameter.default
                for name, parameter in inspect.signature(maximize).parameters.items()}
    refuse_synthesis_options(arguments, defaults)
    for name in (*SYNTHESIS_ONLY, "objective"):
        del arguments[name]
    images = arguments["from_images"]
    arguments.update(filters=filter_spec(arguments["filters"]), from_images=image_words(images))
    layer = arguments["layer"]
    info = (last_feature_map(resolved.model, resolved.image_size(arguments["size"]))
            if layer == "auto" else find_feature_map(resolved.model, layer))
    chosen = parse_filters(arguments["filters"], int(info.output_shape[-1]), info.path)
    return dataset_examples(maximize, resolved, info, chosen, images, arguments, out,
                            progress)


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
