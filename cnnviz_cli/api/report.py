"""`cnnviz_cli.report`: the HTML report of output folders, merging shards into one."""

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Report:
    """A written report: `path` (its index.html), the `folders` it shows and their merged
    `manifest`."""

    path: Path
    folders: list[Path]
    manifest: dict


def report(folders: str | Path | Sequence[str | Path], out: str | Path | None = None) -> Report:
    """Write index.html for the output folders of cnnviz runs.

    One folder: rebuild its report from its manifest. Several (e.g. the `shard` outputs of
    one job): merge their manifests into `out`/manifest.json and write one report there.

    Args:
        folders: one output folder or several.
        out: where to write index.html (and, for several folders, the merged manifest.json);
            by default the folder, or the common parent of several.

    Returns:
        A Report.

    Raises:
        CnnvizError: a folder without a cnnviz manifest, or an `out` that holds another
            run's manifest.
    """
    from cnnviz_cli.errors import CnnvizError
    from cnnviz_cli.io.manifests import merge_manifests, read_manifest
    from cnnviz_cli.io.outputs import MANIFEST, REPORT, to_json, write_atomic
    from cnnviz_cli.render.report import render_report

    given = [folders] if isinstance(folders, str | Path) else folders
    folders = list(dict.fromkeys(Path(folder).resolve() for folder in given))
    if not folders:
        raise CnnvizError("Give at least one output folder to report on.")
    manifests = [read_manifest(folder) for folder in folders]
    if out is not None:
        target = Path(out).resolve()
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
    return Report(target / REPORT, folders, merged)
