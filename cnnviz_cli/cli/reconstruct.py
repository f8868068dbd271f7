"""`cnnviz reconstruct`: what a layer keeps (inversion) and what drives its units (projections).

Its options are the table of cnnviz_cli.api.reconstruct."""

import click

from cnnviz_cli.cli.common import CnnvizCommand, finish, run_table_command


@click.command(cls=CnnvizCommand, table="reconstruct")
@click.pass_context
def reconstruct(ctx: click.Context, **options) -> None:
    """Project a layer back to pixels, or invert its features.

    guided / deconvnet: for each layer, the strongest activation of each of the --top-channels
    channels (or of each --filter) projected into pixel space, one panel each
    (<out>/<image>/reconstruct-<method>-<layer>.png). inversion: an image optimised so that its
    features at each layer match the input's; the strip from shallow to deep shows what each
    depth keeps (reconstruct-inversion.png); the manifest records the relative feature error.

    \b
    Example:
      cnnviz reconstruct sample_images/ --method guided -l block3_conv2 --filter 0-3 -o out/guided
      cnnviz reconstruct sample_images/star.png --method inversion \\
                         -l block1_conv1 -l block3_conv2 -o out/inversion
    """
    finish(ctx, run_table_command(ctx, options), options["print_json"])
