"""`cnnviz maximize`: images synthesised to excite filters of a layer, or classes.

Its options are the table of cnnviz_cli.api.maximize."""

import click

from cnnviz_cli.cli.common import CnnvizCommand, finish, run_table_command


@click.command(cls=CnnvizCommand, table="maximize")
@click.pass_context
def maximize(ctx: click.Context, **options) -> None:
    """Synthesise images that excite a layer's filters, or classes.

    Writes a labelled grid (<out>/maximize-<layer>-grid.png), one PNG per filter
    (<out>/maximize-<layer>/filter-<i>.png) or class (<out>/maximize-class-<label>.png), and
    records in the manifest the activation reached and that of random noise.
    With --from-images, writes each filter's dataset examples instead: a grid of the --top
    image patches of strongest activation beside their projections
    (<out>/maximize-<layer>-examples/filter-<i>.png), with their values and positions in the
    manifest.

    \b
    Example:
      cnnviz maximize -l block3_conv2 --filter 0-3 --filter 9 -o out/filters
      cnnviz maximize --class star --class ring -o out/classes
      cnnviz maximize -l block4_conv --filter 5 --samples 4 --diversity 0.5 -o out/diverse
      cnnviz maximize --from-images sample_images/ -l block3_conv2 --filter 0-3 -o out/examples
    """
    finish(ctx, run_table_command(ctx, options), options["print_json"])
