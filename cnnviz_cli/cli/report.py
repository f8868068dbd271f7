"""`cnnviz report`: rebuild the HTML report of output folders, merging shards into one."""

from pathlib import Path

import click


@click.command()
@click.argument("folders", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write index.html (and, for several folders, the merged "
              "manifest.json) [default: the folder, or the common parent of several].")
@click.option("--json", "print_json", is_flag=True, help="Also print the merged manifest.")
@click.pass_context
def report(ctx: click.Context, folders: tuple[Path, ...], out: Path | None,
           print_json: bool) -> None:
    """Write index.html for the output folders of cnnviz runs.

    One folder: rebuild its report from its manifest. Several (e.g. the --shard K/N
    outputs of one job): merge their manifests into OUT/manifest.json and one report.

    \b
    Example:
      cnnviz cam sample_images/ --shard 1/2 -o out/shard-1
      cnnviz cam sample_images/ --shard 2/2 -o out/shard-2
      cnnviz report out/shard-1 out/shard-2 -o out/
    """
    from cnnviz_cli import api
    from cnnviz_cli.cli.common import quiet
    from cnnviz_cli.io.outputs import to_json

    written = api.report(folders, out)
    if print_json:
        click.echo(to_json(written.manifest))
    if not quiet(ctx):
        click.echo(f"Wrote {written.path} ({len(written.manifest['outputs'])} files from "
                   f"{len(written.folders)} folder(s)).", err=True)
