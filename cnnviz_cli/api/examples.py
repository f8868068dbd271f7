"""`maximize --from-images`: the dataset examples of filters, streamed over the user's images.

For each filter, the `top` images of strongest activation (max over positions), each as the
patch of the input under that unit (the support of its deconvnet or guided projection, as
`reconstruct --extent unit` draws it) beside the projection.
"""

from dataclasses import dataclass, field
from functools import partial

import numpy as np

from cnnviz_cli.api.results import File, Result, Series, slug


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


def examples_plan(resolved, info, chosen: list[int], settings: dict):
    """The run's plan: per batch, offer every image to each chosen filter's running top K
    (projecting the ones that enter); at the end, one item per filter."""
    from cnnviz_cli.api.run import Plan
    from cnnviz_cli.techniques.backprop import Projector
    from cnnviz_cli.techniques.examples import RunningTopK, StrongestUnits

    size = resolved.image_size(settings["size"])
    shape = (*size, resolved.channels)
    strongest = StrongestUnits(resolved.model, info.path, shape, resolved.preprocess)
    projector = Projector(resolved.model, info.path, settings["projection"], shape,
                          resolved.preprocess, extent="unit")
    best = RunningTopK(len(chosen), settings["top"])

    def each(batch: list) -> list:
        pixels = np.stack([image.resized for image in batch]).astype("float32")
        values, positions = strongest(pixels, chosen)
        entered = best.offer(values, positions, [image.key for image in batch])
        for row in sorted({row for row, _, _ in entered}):
            mine = [(column, example) for r, column, example in entered if r == row]
            projected = projector(pixels[row:row + 1],
                                  channels=[chosen[column] for column, _ in mine])
            for (_, example), projection in zip(mine, projected.images[0], strict=True):
                example.patch = _patch(batch[row], projection)
        return []

    def end() -> list[FilterExamples]:
        return [FilterExamples(info.path, index, examples)
                for index, examples in zip(chosen, best.best, strict=True)]

    return Plan(each, end, retain=True, result=ExamplesResult,  # one size: comparable maps
                geometry=resolved.geometry(size, settings.get("resize", "stretch")))


def _patch(image, projection: np.ndarray) -> Patch:
    from cnnviz_cli.render.maps import support_box

    rows, columns = support_box(projection)
    box = tuple((int(side.start), int(side.stop)) for side in (rows, columns))
    return Patch(image.name, box,
                 image.resized[rows, columns].copy(), projection[rows, columns].copy())
