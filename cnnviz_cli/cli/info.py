"""`cnnviz info`: where a PNG written by cnnviz came from (no TensorFlow needed)."""

import json
from pathlib import Path

import click

SHOWN = (  # (field, caption) in the order they are printed; `model.X` is a model field
    ("version", "version"),
    ("command", "command"),
    ("command_line", "command line"),
    ("model.source", "model"),
    ("model.weights", "weights"),
    ("model.sha256", "model sha256"),
    ("model.weights_sha256", "weights sha256"),
    ("model.preprocess", "preprocess"),
    ("layer", "layer"),
    ("method", "method"),
    ("target", "target"),
    ("seed", "seed"),
)


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "print_json", is_flag=True,
              help="Print a JSON list with one object of fields per file.")
def info(files: tuple[Path, ...], print_json: bool) -> None:
    """Show the provenance cnnviz writes into every PNG it makes.

    Tool version, command line (without -o DIR), model (name or path, weights, SHA-256 of
    the model and weights files, preprocessing), and the layer, method, target and seed where
    they apply, where settings not on the command line came from (environment, profile,
    file), plus the file's manifest record. --json uses the manifest's names
    (command_line, model.sha256). Exits 1 if some files could not be read, 2 if none could.

    \b
    Example:
      cnnviz cam sample_images/star.png -o out/
      cnnviz info out/star/cam-gradcam-star.png
    """
    from cnnviz_cli import api
    from cnnviz_cli.errors import CnnvizError, InputError

    found, failures = [], []
    for path in files:
        try:
            found.append(api.info(path))
        except InputError as error:
            failures.append(str(error))
    if len(failures) == len(files) == 1:
        raise CnnvizError(failures[0])
    if print_json:
        click.echo(json.dumps(found, indent=2, ensure_ascii=False))
    elif found:
        click.echo("\n\n".join(_readable(fields) for fields in found))
    for failure in failures:
        click.echo(failure, err=True)
    if failures:
        raise click.exceptions.Exit(2 if len(failures) == len(files) else 1)


def _readable(fields: dict) -> str:
    """The fields of one file as an indented list of captions and values."""
    model = fields.get("model")
    values = {**fields, **{f"model.{key}": value for key, value in model.items()}} \
        if isinstance(model, dict) else fields
    rows = [(caption, values[name]) for name, caption in SHOWN if values.get(name) is not None]
    if fields.get("settings"):
        rows.append(("settings from", ", ".join(f"{name}: {source}" for name, source
                                                in fields["settings"].items())))
    if "record" in fields:
        rows.append(("record", json.dumps(fields["record"], ensure_ascii=False)))
    width = max(len(caption) for caption, _ in rows)
    lines = (f"  {caption:<{width}}  {value}" for caption, value in rows)
    return "\n".join([fields["file"], *lines])
