"""`maximize --from-images`: the dataset examples of filters, streamed over the user's images.

For each filter, the `top` images of strongest activation (max over positions), each as the
patch of the input under that unit (the support of its deconvnet or guided projection, as
`reconstruct --extent unit` draws it) beside the projection.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from cnnviz_cli.api.results import File, Result, Series, collect, open_session, part, slug

SYNTHESIS_ONLY = ("classes", "task", "direction", "param", "transforms", "l2", "tv", "blur",
                  "steps", "lr", "seed", "gif", "position", "direction_vector",
                  "direction_images", "diversity", "samples", "checkpoints")
"""maximize's options that only synthesis uses (with --objective other than channel)."""


@dataclass
class Patch:
    """What an example keeps of its image: the input's name, the crop `box` (rows, columns)
    around the unit, the pixels and the projection inside it."""

    input: str
    box: tuple[tuple[int, int], tuple[int, int]]
    pixels: np.ndarray = field(repr=False)
    projection: np.ndarray = field(repr=False)


@dataclass
class FilterExamples:
    """The best examples (techniques.examples.Example, best first) of one filter of a layer."""

    layer: str
    filter: int
    examples: list


def example_record(layer: str, filter_index: int, rank: int, example) -> dict:
    """The manifest's record of one example."""
    patch = example.patch
    return {"kind": "example", "layer": layer, "filter": filter_index, "rank": rank,
            "activation": example.value, "input": patch.input, "key": example.key,
            "position": list(example.position), "box": [list(side) for side in patch.box]}


@dataclass(repr=False)
class ExamplesResult(Result):
    """One item per filter (FilterExamples): its best images, activations and positions."""

    command = "maximize"

    @property
    def examples(self) -> dict[int, list]:
        """filter index -> its examples, best first."""
        return {item.filter: item.examples for item in self.items}

    def _files(self, item: FilterExamples):
        from cnnviz_cli.render.examples import example_tile, examples_grid

        if not item.examples:  # no image could be read
            return
        folder = f"maximize-{slug(item.layer)}-examples/filter-{item.filter}"
        records = [example_record(item.layer, item.filter, rank, example)
                   for rank, example in enumerate(item.examples, start=1)]
        projection = self.options["projection"]
        for record, example in zip(records, item.examples, strict=True):
            yield File(f"{folder}/example-{record['rank']}.png",
                       {**record, "projection": projection},
                       partial(example_tile, example.patch.pixels, example.patch.projection))
        title = f"{item.layer} · filter {item.filter} · top {len(item.examples)} · {projection}"
        yield File(f"{folder}.png", {"kind": "examples", "layer": item.layer,
                                     "filter": item.filter, "projection": projection,
                                     "examples": records},
                   partial(examples_grid, [e.patch for e in item.examples],
                           [f"{e.value:.3g} · {e.key}" for e in item.examples], title))

    def _picture(self, item: FilterExamples) -> np.ndarray:
        return list(self._files(item))[-1].render()

    def _series(self, item: FilterExamples):
        yield Series(f"{item.layer}/filter-{item.filter}", lambda: self._picture(item))


def refuse_synthesis_options(arguments: dict, defaults: dict) -> None:
    """One sentence for options given with `from_images` that only synthesis uses."""
    from cnnviz_cli.api.session import flag_words
    from cnnviz_cli.errors import CnnvizError

    given = [name for name in SYNTHESIS_ONLY if arguments[name] not in (defaults[name], None)
             and arguments[name] != []]
    if arguments["objective"] != "channel":
        given.insert(0, "objective")
    if given:
        flags = ", ".join(flag_words(name, arguments[name])[0] for name in given)
        raise CnnvizError(f"{flags} cannot take effect with --from-images (dataset examples "
                          f"are not synthesised); leave {'it' if len(given) == 1 else 'them'} "
                          "out.")
    if arguments["top"] < 1:
        raise CnnvizError(f"--top must be at least 1, but it is {arguments['top']}.")


def dataset_examples(function: Callable, resolved, info, chosen: list[int], images,
                     arguments: dict, out, progress: bool) -> ExamplesResult:
    """Stream the images and keep each chosen filter's best examples (`arguments`: those of
    `function`, `api.maximize`, as recorded)."""
    from cnnviz_cli.techniques.backprop import Projector
    from cnnviz_cli.techniques.examples import RunningTopK, StrongestUnits

    arguments = {**arguments, "run": {"shard": arguments.pop("shard")}}
    session, run = open_session("maximize", function, arguments, resolved, out, progress,
                                run_defaults={"batch_size": arguments["batch_size"]})
    with session:
        size = resolved.image_size(arguments["size"])
        shape = (*size, resolved.channels)
        strongest = StrongestUnits(resolved.model, info.path, shape, resolved.preprocess)
        projector = Projector(resolved.model, info.path, arguments["projection"], shape,
                              resolved.preprocess, extent="unit")
        best = RunningTopK(len(chosen), arguments["top"])
        batches = session.batches(images, {**run, "size": size,  # one size: comparable maps
                                           "batch_size": arguments["batch_size"]})
        for batch in batches:
            pixels = np.stack([image.resized for image in batch]).astype("float32")
            values, positions = strongest(pixels, chosen)
            entered = best.offer(values, positions, [image.key for image in batch])
            for row in sorted({row for row, _, _ in entered}):
                mine = [(column, example) for r, column, example in entered if r == row]
                projected = projector(pixels[row:row + 1],
                                      channels=[chosen[column] for column, _ in mine])
                for (_, example), projection in zip(mine, projected.images[0], strict=True):
                    example.patch = _patch(batch[row], projection)
        items = [FilterExamples(info.path, index, examples)
                 for index, examples in zip(chosen, best.best, strict=True)]
        session.keep(part(session, ExamplesResult, items), retain=True)
        return collect(session, ExamplesResult)


def _patch(image, projection: np.ndarray) -> Patch:
    from cnnviz_cli.render.maps import support_box

    rows, columns = support_box(projection)
    box = tuple((int(side.start), int(side.stop)) for side in (rows, columns))
    return Patch(image.name, box,
                 image.resized[rows, columns].copy(), projection[rows, columns].copy())
