"""`cnnviz filters`: the learned kernels of a convolution layer, and their training history.

Its options are the table of cnnviz_cli.api.filters."""

import click

from cnnviz_cli.cli.common import CnnvizCommand, finish, run_table_command


@click.command(cls=CnnvizCommand, table="filters")
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
    finish(ctx, run_table_command(ctx, options), options["print_json"])
