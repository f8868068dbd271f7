"""`cnnviz_cli.filters`: a convolution layer's learned kernels, and their training history."""

from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path

import numpy as np

from cnnviz_cli.api.results import File, Result, Series, slug
from cnnviz_cli.api.run import Plan, Technique, run
from cnnviz_cli.api.tables import CHECKPOINTS, MODEL_OPTIONS, OUTPUT, OUTPUT_OPTIONS
from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.options import Option, Table


@dataclass
class FiltersItem:
    """The kernels drawn, per checkpoint (one entry without checkpoints)."""

    layer: str
    kernel_shape: list[int]
    shown: list  # techniques.filters selections: kernels, indices, norms
    checkpoints: list[str]


@dataclass(repr=False)
class FiltersResult(Result):
    """`kernels` (filters, height, width, channels) as drawn; with checkpoints, one per file."""

    command = "filters"

    @property
    def kernels(self) -> np.ndarray | list[np.ndarray]:
        shown = [selection.kernels for selection in self.items[0].shown]
        return shown if self.items[0].checkpoints else shown[0]

    @property
    def norms(self) -> list:
        shown = [selection.norms for selection in self.items[0].shown]
        return shown if self.items[0].checkpoints else shown[0]

    def _files(self, item: FiltersItem):
        from cnnviz_cli.render.grid import grid
        from cnnviz_cli.render.maps import kernel_tiles, symmetric_scale

        colormap = self.options["colormap"]
        record = {"layer": item.layer, "kernel_shape": item.kernel_shape,
                  "channel": self.options["channel"]}
        name = f"filters-{slug(item.layer)}"
        if not item.checkpoints:
            (shown,) = item.shown

            def picture() -> np.ndarray:
                tiles = kernel_tiles(shown.kernels, symmetric_scale([shown.kernels]), colormap)
                return grid(tiles, [f"{i}" for i in shown.indices], title=f"{item.layer} kernels")

            yield File(f"{name}.png", {**record, "filters": shown.indices, "norms": shown.norms},
                       picture)
            return
        indices = item.shown[0].indices
        history = {**record, "checkpoints": item.checkpoints, "filters": indices,
                   "norms": [shown.norms for shown in item.shown]}
        yield File(f"{name}-checkpoints.png", history, partial(_table, item, colormap))
        yield File(f"{name}-checkpoints.gif", history, partial(_frames, item, colormap),
                   kind="gif", frame_ms=700)


    def _series(self, item: FiltersItem):
        if not item.checkpoints:
            yield Series(item.layer, next(self._files(item)).render,
                         numbers={"mean_norm": float(np.mean(item.shown[0].norms))})
            return
        for index, shown in enumerate(item.shown):
            yield Series(item.layer, partial(_frame, item, self.options["colormap"], index),
                         numbers={"mean_norm": float(np.mean(shown.norms))}, step=index)


def _rows(item: FiltersItem, colormap: str) -> list[list[np.ndarray]]:
    from cnnviz_cli.render.maps import kernel_tiles, symmetric_scale

    limit = symmetric_scale([shown.kernels for shown in item.shown])
    return [kernel_tiles(shown.kernels, limit, colormap) for shown in item.shown]


def _table(item: FiltersItem, colormap: str) -> np.ndarray:
    from cnnviz_cli.render.grid import grid

    first, last = (Path(item.checkpoints[i]).name for i in (0, -1))
    rows = _rows(item, colormap)
    return grid([tile for row in rows for tile in row], columns=len(rows[0]),
                title=f"{item.layer}: {first} (top) to {last} (bottom)")


def _frame(item: FiltersItem, colormap: str, index: int) -> np.ndarray:
    return _frames(item, colormap)[index]


def _frames(item: FiltersItem, colormap: str) -> list[np.ndarray]:
    from cnnviz_cli.render.grid import grid

    labels = [str(i) for i in item.shown[0].indices]
    return [grid(row, labels, title=f"{item.layer} · {Path(file).name}")
            for row, file in zip(_rows(item, colormap), item.checkpoints, strict=True)]


def _channel(value) -> str:
    """`--channel N|mean`, as text; one sentence for anything else."""
    text = str(value)
    if not (text.isdigit() or text == "mean"):
        raise CnnvizError(f"--channel takes an input channel index or `mean`, not {text!r}.")
    return text


@cache
def table() -> Table:
    """The options of `cnnviz filters` and `cnnviz_cli.filters`."""
    what = "What to show"
    own = (
        Option("layer", "auto", "A Conv2D, DepthwiseConv2D or SeparableConv2D layer; auto = "
               "the first convolution.", short="-l", metavar="LAYER", group=what),
        Option("channel", "mean", "For kernels with other than 3 input channels: draw input "
               "channel N, or the mean over input channels.", metavar="N|mean", group=what,
               settle=_channel),
        Option("order", "index", "Filters in index order, or largest L2 norm first.",
               ("index", "norm"), group=what),
        Option("max_filters", 64, "Filters drawn at most, the first ones in the --order "
               "chosen.", int, low=1, group=what),
        Option("colormap", "RdBu_r", "Colour map for single-channel kernels (zero is the "
               "middle colour).", group=OUTPUT),
    )
    model = [option for option in MODEL_OPTIONS if option.name != "precision"]
    return Table("filters", CHECKPOINTS, model, own, OUTPUT_OPTIONS)


def filters(model, settings: dict | None = None, /, *, progress: bool = False,
            **options) -> FiltersResult:
    """The learned kernels of a convolution layer, and how they changed over checkpoints.

    Args:
        model, settings, progress: as for `cnnviz_cli.cam`.
        **options: the options of `cnnviz filters` by their keyword (`cnnviz filters --help`,
            or `cnnviz_cli.api.filters.table()`): layer (`auto` = the first convolution),
            channel (N or `mean`), order (index or norm), max_filters, checkpoints (one row
            per checkpoint and an animation), colormap, out, ...

    Returns:
        A FiltersResult with `kernels` and `norms` (lists of them, with checkpoints).
    """
    return run(TECHNIQUE, model, None, {**(settings or {}), **options}, progress)


def _prepare(resolved, settings: dict, _run: dict, _session) -> Plan:
    """The kernels drawn, once per checkpoint (once without)."""
    from cnnviz_cli.models.checkpoints import checkpoint_weights, trainable_copy
    from cnnviz_cli.models.layers import default_layers, find_layer
    from cnnviz_cli.models.preprocessing import reverses_channels
    from cnnviz_cli.techniques.filters import filter_order, kernel_tensor, select_kernels

    if settings["layer"] != "auto":
        info = find_layer(resolved.model, settings["layer"])
    else:
        first = default_layers(resolved.model, resolved.image_size())["filters"]
        if not first:
            raise CnnvizError("The model has no Conv2D, DepthwiseConv2D or SeparableConv2D "
                              "layer whose kernels to draw (see `cnnviz layers`).")
        info = first[0]
    channel = settings["channel"]
    selected = None if channel == "mean" else int(channel)
    kernel = kernel_tensor(info.layer)
    indices = filter_order(kernel, settings["order"], settings["max_filters"])
    checkpoints, states = [str(file) for file in settings["checkpoints"]], [None]
    if checkpoints:
        copy = trainable_copy(resolved.model)
        info = find_layer(copy, info.path)
        states = checkpoint_weights(copy, [Path(file) for file in checkpoints],
                                    safe_mode=not settings["unsafe_deserialization"])
    bgr = resolved.channels == 3 and reverses_channels(resolved.preprocess)
    shown = [select_kernels(kernel_tensor(info.layer), indices, selected, bgr) for _ in states]
    item = FiltersItem(info.path, list(kernel.shape), shown, checkpoints)
    return Plan(end=lambda: [item], retain=True)


TECHNIQUE = Technique(table, FiltersResult, _prepare, follows_checkpoints=False)
