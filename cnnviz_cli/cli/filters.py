"""`cnnviz filters`: the learned kernels of a convolution layer, and their training history."""

from pathlib import Path

import click

from cnnviz_cli.cli.common import CnnvizCommand, Run, model_options, output_options, slug


@click.command(cls=CnnvizCommand)
@model_options
@click.option("-l", "--layer", "layer_spec", default="auto", show_default=True, metavar="LAYER",
              help="A Conv2D, DepthwiseConv2D or SeparableConv2D layer; auto = the first "
              "convolution.")
@click.option("--channel", metavar="N|mean", default="mean", show_default=True,
              help="For kernels with other than 3 input channels: draw input channel N, or the "
              "mean over input channels.")
@click.option("--order", type=click.Choice(["index", "norm"]), default="index", show_default=True,
              help="Filters in index order, or largest L2 norm first.")
@click.option("--max-filters", type=click.IntRange(min=1), default=64, show_default=True,
              help="Filters drawn at most, the first ones in the --order chosen.")
@click.option("--checkpoint", "checkpoints", multiple=True, metavar="FILE",
              type=click.Path(path_type=Path),
              help="A model or weights file saved during training; repeat in training order to "
              "draw one row per checkpoint and an animated GIF.")
@click.option("--colormap", default="RdBu_r", show_default=True,
              help="Colour map for single-channel kernels (zero is the middle colour).")
@output_options
@click.pass_context
def filters(ctx: click.Context, **options) -> None:
    """Draw the learned kernels of a convolution layer.

    First-layer kernels over RGB are drawn as colour patches (grey = 0); deeper kernels
    per input channel or averaged. With --checkpoint, shows how they changed in training.

    \b
    Example:
      cnnviz filters -l block1_conv1 --order norm -o out/
      cnnviz filters -l block1_conv1 --checkpoint ck/epoch_00.weights.h5 \\
                     --checkpoint ck/epoch_05.weights.h5 -o out/
    """
    from cnnviz_cli.models.checkpoints import checkpoint_layers
    from cnnviz_cli.models.layers import CONV_TYPES, find_layer, iter_layers
    from cnnviz_cli.render.grid import grid
    from cnnviz_cli.render.maps import kernel_tiles, symmetric_scale
    from cnnviz_cli.techniques.filters import filter_order, kernel_tensor, select_kernels

    run = Run(ctx)
    resolved = run.load_model()
    if options["layer_spec"] != "auto":
        info = find_layer(resolved.model, options["layer_spec"])
    else:
        info = next((i for i in iter_layers(resolved.model) if isinstance(i.layer, CONV_TYPES)),
                    None) or find_layer(resolved.model, "-1")
    channel = None if options["channel"] == "mean" else _channel(options["channel"])
    kernel = kernel_tensor(info.layer)
    indices = filter_order(kernel, options["order"], options["max_filters"])
    record = {"layer": info.path, "kernel_shape": list(kernel.shape), "channel": options["channel"]}
    name = f"filters-{slug(info.path)}"

    if not options["checkpoints"]:
        shown = select_kernels(kernel, indices, channel)
        tiles = kernel_tiles(shown.kernels, symmetric_scale([shown.kernels]), options["colormap"])
        picture = grid(tiles, [f"{i}" for i in shown.indices], title=f"{info.path} kernels")
        run.outputs.save_png(f"{name}.png", picture,
                             {**record, "filters": shown.indices, "norms": shown.norms})
        run.finish()
        return

    files = list(options["checkpoints"])
    layers = checkpoint_layers(resolved.model, info.path, files,
                               safe_mode=not options["unsafe_deserialization"])
    series = [select_kernels(kernel_tensor(layer), indices, channel) for layer in layers]
    limit = symmetric_scale([shown.kernels for shown in series])
    rows = [kernel_tiles(shown.kernels, limit, options["colormap"]) for shown in series]
    frames = [grid(row, [str(i) for i in indices], title=f"{info.path} · {file.name}")
              for row, file in zip(rows, files, strict=True)]
    table = grid([tile for row in rows for tile in row], columns=len(indices),
                 title=f"{info.path}: {files[0].name} (top) to {files[-1].name} (bottom)")
    history = {**record, "checkpoints": [str(f) for f in files], "filters": indices,
               "norms": [shown.norms for shown in series]}
    run.outputs.save_png(f"{name}-checkpoints.png", table, history)
    run.outputs.save_gif(f"{name}-checkpoints.gif", frames, history, frame_ms=700)
    run.finish()


def _channel(text: str) -> int:
    if not text.isdigit():
        raise click.BadParameter(f"expected an input channel index or `mean`, got {text!r}",
                                 param_hint="--channel")
    return int(text)
