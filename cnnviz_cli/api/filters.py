"""`cnnviz_cli.filters`: a convolution layer's learned kernels, and their training history."""

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


def filters(
    model,
    *,
    layer: str = "auto",
    channel: str | int = "mean",
    order: str = "index",
    max_filters: int = 64,
    checkpoints: Sequence[str | Path] = (),
    colormap: str = "RdBu_r",
    unsafe_deserialization: bool = False,
    out: str | Path | None = None,
    tensorboard: str | Path | None = None,
    progress: bool = False,
    force: bool = False,
) -> FiltersResult:
    """The learned kernels of a convolution layer, and how they changed over checkpoints.

    Args:
        model: a name, a model file, a keras.Model or a `load_model` result.
        layer: a Conv2D, DepthwiseConv2D or SeparableConv2D layer; `auto` = the first.
        channel: for kernels over other than 3 input channels, draw input channel N, or the
            `mean` over input channels.
        order: `index`, or `norm` (largest L2 norm first).
        max_filters: how many filters to draw.
        checkpoints: model or weights files saved during training, in training order: one
            row per checkpoint and an animation.
        colormap: colour map of single-channel kernels (zero is its middle colour).
        unsafe_deserialization: allow checkpoint model files with Lambda layers.
        out: also write the files the command writes into this folder.
        tensorboard: also write the pictures and numbers as TensorBoard summaries into
            this log folder (step 0; with checkpoints, the checkpoint's index).
        progress: show messages on stderr.
        force: replace the outputs of an earlier run with other options in `out`.

    Returns:
        A FiltersResult with `kernels` and `norms` (lists of them, with checkpoints).
    """
    from cnnviz_cli.api.models import load_model
    from cnnviz_cli.errors import CnnvizError
    from cnnviz_cli.models.checkpoints import checkpoint_weights, trainable_copy
    from cnnviz_cli.models.layers import default_layers, find_layer
    from cnnviz_cli.models.preprocessing import reverses_channels
    from cnnviz_cli.techniques.filters import filter_order, kernel_tensor, select_kernels

    resolved = load_model(model)
    arguments = {**locals_of(filters, locals()), "checkpoints": [str(c) for c in checkpoints],
                 "channel": str(channel)}
    session, _ = open_session("filters", filters, arguments, resolved, out, progress)
    with session:
        if layer != "auto":
            info = find_layer(resolved.model, layer)
        else:
            first = default_layers(resolved.model, resolved.image_size())["filters"]
            if not first:
                raise CnnvizError("The model has no Conv2D, DepthwiseConv2D or SeparableConv2D "
                                  "layer whose kernels to draw (see `cnnviz layers`).")
            info = first[0]
        selected = None if str(channel) == "mean" else _channel(channel)
        kernel = kernel_tensor(info.layer)
        indices = filter_order(kernel, order, max_filters)
        states = [None]
        if checkpoints:
            copy = trainable_copy(resolved.model)
            info = find_layer(copy, info.path)
            states = checkpoint_weights(copy, [Path(c) for c in checkpoints],
                                        safe_mode=not unsafe_deserialization)
        bgr = resolved.channels == 3 and reverses_channels(resolved.preprocess)
        shown = [select_kernels(kernel_tensor(info.layer), indices, selected, bgr)
                 for _ in states]
        item = FiltersItem(info.path, list(kernel.shape), shown, arguments["checkpoints"])
        session.keep(part(session, FiltersResult, [item]), retain=True)
        return collect(session, FiltersResult)


def _channel(channel: str | int) -> int:
    from cnnviz_cli.errors import CnnvizError

    text = str(channel)
    if not text.isdigit():
        raise CnnvizError(f"--channel takes an input channel index or `mean`, not {text!r}.")
    return int(text)
