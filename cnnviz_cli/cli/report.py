"""`cnnviz report`: rebuild the HTML report of output folders, merging shards into one."""

import os
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
    from cnnviz_cli.errors import CnnvizError
    from cnnviz_cli.io.manifests import merge_manifests, read_manifest
    from cnnviz_cli.io.outputs import MANIFEST, REPORT, to_json, write_atomic
    from cnnviz_cli.render.report import render_report

    folders = tuple(dict.fromkeys(folder.resolve() for folder in folders))
    manifests = [read_manifest(folder) for folder in folders]
    if out is not None:
        target = out.resolve()
    else:
        target = Path(os.path.commonpath(folders)) if len(folders) > 1 else folders[0]
    merged = merge_manifests([
        (manifest, Path(os.path.relpath(folder, target)).as_posix())
        for manifest, folder in zip(manifests, folders, strict=True)
    ])
    target.mkdir(parents=True, exist_ok=True)
    if target not in folders:
        existing = target / MANIFEST
        if existing.is_file() and read_manifest(target).get("command") != "report":
            raise CnnvizError(
                f"{existing} belongs to a cnnviz run; write the merged report elsewhere with -o."
            )
        write_atomic(existing, to_json(merged).encode("utf-8"))
    write_atomic(target / REPORT, render_report(merged).encode("utf-8"))
    if print_json:
        click.echo(to_json(merged))
    if not ctx.find_root().obj.get("quiet"):
        click.echo(f"Wrote {target / REPORT} ({len(merged['outputs'])} files from "
                   f"{len(folders)} folder(s)).", err=True)
