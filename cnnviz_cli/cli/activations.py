"""`cnnviz activations`: feature-map grids and mean-activation overlays.

Its options are the table of cnnviz_cli.api.activations."""

import click

from cnnviz_cli.cli.common import CnnvizCommand, finish, run_table_command


@click.command(cls=CnnvizCommand, table="activations")
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
    finish(ctx, run_table_command(ctx, options), options["print_json"])
