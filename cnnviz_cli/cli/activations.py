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
@click.option("--factorize", type=click.IntRange(min=1), metavar="K",
              help="Fit K concepts (NMF of each layer's maps over all the images): per image "
              "their regions in colour (concepts-<layer>.png), the vectors in "
              "concepts-<layer>.npy.")
@click.option("--concepts", "concepts_file", type=click.Path(exists=True, dir_okay=False),
              metavar="FILE.npy", help="Apply concepts that --factorize saved, at the one "
              "--layer they were fitted at.")
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
      cnnviz activations sample_images/*.png -l block4_conv --factorize 4 -o out/concepts
      cnnviz activations sample_images/star.png -l block4_conv \\
        --concepts out/concepts/concepts-block4_conv.npy -o out/applied
    """
    from cnnviz_cli import api

    result = api.activations(
        load_model(options), options["images"], layers=options["layer_specs"],
        max_channels=options["max_channels"], order=options["order"], scale=options["scale"],
        colormap=options["colormap"], alpha=options["alpha"], checkpoints=options["checkpoints"],
        factorize=options["factorize"], concepts=options["concepts_file"],
        **run_settings(ctx, options),
    )
    finish(ctx, result, options["print_json"])
