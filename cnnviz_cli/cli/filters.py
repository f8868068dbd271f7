"""`cnnviz filters`: the learned kernels of a convolution layer, and their training history."""

import click

from cnnviz_cli.cli.common import (
    CnnvizCommand,
    checkpoint_option,
    device_options,
    finish,
    load_model,
    model_options,
    output_options,
    run_settings,
)


@click.command(cls=CnnvizCommand)
@model_options
@device_options
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
@checkpoint_option
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
      cnnviz filters -l block1_conv1 --order norm -o out/filters
      cnnviz filters -l block1_conv1 --checkpoint ck/epoch_00.weights.h5 \\
                     --checkpoint ck/epoch_05.weights.h5 -o out/history
    """
    from cnnviz_cli import api

    result = api.filters(
        load_model(options), layer=options["layer_spec"], channel=options["channel"],
        order=options["order"], max_filters=options["max_filters"],
        checkpoints=options["checkpoints"], colormap=options["colormap"],
        unsafe_deserialization=options["unsafe_deserialization"],
        **run_settings(ctx, options, images=False),
    )
    finish(ctx, result, options["print_json"])
