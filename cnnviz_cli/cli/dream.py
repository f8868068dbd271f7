"""`cnnviz dream`: DeepDream, amplify what some layers see in a photo.

Its options are the table of cnnviz_cli.api.dream."""

import click

from cnnviz_cli.cli.common import CnnvizCommand, finish, run_table_command


@click.command(cls=CnnvizCommand, table="dream")
@click.pass_context
def dream(ctx: click.Context, **options) -> None:
    """DeepDream: change a photo so that layers respond to it more.

    Dreams at the photo's own resolution (or with its longer side at --size), octave by octave,
    re-injecting the detail dreamed at each octave into the next. Writes
    <out>/<image>/dream.png at the input's resolution; the manifest records the objective
    (weighted mean squared activation) before and after.

    \b
    Example:
      cnnviz dream sample_images/chelsea.jpg -l block3_conv2 -l block4_conv:0.5 --blend 0.7 -o out/
    """
    finish(ctx, run_table_command(ctx, options), options["print_json"])
