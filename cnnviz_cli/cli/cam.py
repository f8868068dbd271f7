"""`cnnviz cam`: class activation maps of every method, with optional faithfulness metrics.

Its options are the table of cnnviz_cli.api.cam (methods and metrics declare their own)."""

import click

from cnnviz_cli.cli.common import CnnvizCommand, finish, quiet, run_table_command
from cnnviz_cli.cli.gates import GATE_EXIT_CODE, report_checks


@click.command(cls=CnnvizCommand, table="cam")
@click.pass_context
def cam(ctx: click.Context, **options) -> None:
    """Heatmaps: which pixels drove a class score (the CAM family).

    Per image, class and method: the heatmap over the image, the bare heatmap and, with several
    methods, a side-by-side panel, in <out>/<image>/. Exit 3 when a gate fails.

    \b
    Example:
      cnnviz cam sample_images/ --method gradcam,faster-scorecam,layercam --metrics -o out/
      cnnviz cam val/ --targets val.csv --save-npy -o old/
      cnnviz cam val/ --targets val.csv --baseline old/ --fail-under pointing=0.9 -o new/
      cnnviz cam sample_images/star.png --method gradcam,saliency --sanity -o sanity/
      cnnviz cam val/ --metric road --metric randomisation --fail-over randomisation=0.5 -o trust/
      cnnviz cam sample_images/star.png --checkpoint ck/epoch_00.weights.h5 \\
                 --checkpoint ck/epoch_06.weights.h5 --tensorboard logs/ -o epochs/
    """
    print_json = options["print_json"]
    result = run_table_command(ctx, options)
    failed = 0 if options["checkpoints"] else report_checks(result, quiet(ctx))
    finish(ctx, result, print_json)
    if failed:
        click.echo(f"{failed} of {len(result.gates)} gate(s) failed.", err=True)
        raise click.exceptions.Exit(GATE_EXIT_CODE)
