"""`cnnviz activations`: feature-map grids and mean-activation overlays."""

import click

from cnnviz_cli.cli.common import (
    CnnvizCommand,
    checkpoint_option,
    computing_model_options,
    finish,
    image_options,
    load_model,
    output_options,
    run_settings,
)


@click.command(cls=CnnvizCommand)
@image_options
@computing_model_options
@click.option(
    "-l", "--layer", "layer_specs", multiple=True, metavar="LAYER",
    help="Layer name, nested path (base/conv1), negative index, `all` (every feature map) or "
    "`auto` (the outputs of four stages from shallow to deep, the default). Repeatable.",
)
@click.option("--max-channels", type=click.IntRange(min=1), default=32, show_default=True,
              help="Feature maps drawn per layer grid, in the --order chosen.")
@click.option("--order", type=click.Choice(["mean", "index"]), default="mean", show_default=True,
              help="Show the strongest channels first, or channels in index order.")
@click.option("--scale", type=click.Choice(["shared", "each"]), default="shared",
              show_default=True, help="One colour scale per grid, or one per feature map.")
@click.option("--colormap", default="viridis", show_default=True,
              help="Matplotlib colour map of the feature maps and the overlay.")
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.55, show_default=True,
              help="Opacity of the overlay's heat colours.")
@checkpoint_option
@output_options
@click.pass_context
def activations(ctx: click.Context, **options) -> None:
    """Feature maps an image produces, layer by layer.

    For each image and layer: a grid of the feature maps (<out>/<image>/activations-<layer>.png)
    and the mean activation over channels laid on the image (...-overlay.png).

    \b
    Example:
      cnnviz activations sample_images/ -l block1_conv1 -l block3_conv2 -o out/
      cnnviz activations sample_images/star.png -l block3_conv2 \\
                         --checkpoint ck/epoch_00.weights.h5 --checkpoint ck/epoch_06.weights.h5
    """
    from cnnviz_cli import api

    result = api.activations(
        load_model(options), options["images"], layers=options["layer_specs"],
        max_channels=options["max_channels"], order=options["order"], scale=options["scale"],
        colormap=options["colormap"], alpha=options["alpha"], checkpoints=options["checkpoints"],
        **run_settings(ctx, options),
    )
    finish(ctx, result, options["print_json"])
