"""`cnnviz_cli.info`: where a PNG written by cnnviz came from (no TensorFlow needed)."""

from pathlib import Path


def info(file: str | Path) -> dict:
    """The provenance cnnviz writes into every PNG it makes.

    Args:
        file: a PNG written by a cnnviz command or `Result.save`.

    Returns:
        `file`, then the PNG's fields under the manifest's names: `version`, `command`,
        `command_line`, `model` (source, weights, sha256, weights_sha256, preprocess...), and
        where they apply `layer`, `method`, `target`, `seed` and `record` (the file's record
        in the manifest).

    Raises:
        InputError: the file is missing, not a PNG, or carries no cnnviz provenance.
    """
    from cnnviz_cli.io.provenance import read_png_fields

    return {"file": str(file), **read_png_fields(Path(file))}
