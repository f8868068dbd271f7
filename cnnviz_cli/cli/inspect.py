"""`cnnviz layers` and `cnnviz models`: what can be visualised."""

import json

import click
from click.core import ParameterSource

from cnnviz_cli.api.tables import MODEL_OPTIONS
from cnnviz_cli.cli.common import table_options

DEMO_DESCRIPTION = "bundled shapes classifier, any input size"


@click.command()
@click.argument("model_arg", required=False, metavar="[MODEL]")
@table_options(*(option for option in MODEL_OPTIONS if option.group == "Model"
                  and option.name not in ("device", "gpu_memory", "precision")))
@click.option("--json", "print_json", is_flag=True, help="Print the model and its layers as JSON.")
@click.pass_context
def layers(ctx: click.Context, model_arg: str | None, print_json: bool, **options) -> None:
    """List a model's layers, its feature maps and `-l auto` picks.

    MODEL is a name or file (same as -m, give one of the two; default: the demo model).
    Nested models are expanded and their layers addressed as outer/inner; operations written
    as code in a functional model (the `x + y` of a residual block) are listed too. A feature
    map is a (height, width, channels) output larger than 1x1 at the model's input size (224
    for models of any size). The auto column names the commands whose `-l auto` picks the
    layer. Names are never shortened, so any of them can be pasted into -l. An exported model
    (SavedModel folder, .tflite, .onnx) has no layers to list: its inputs and outputs are
    printed instead.

    \b
    Example:
      cnnviz layers mobilenet_v2 --weights none
    """
    from cnnviz_cli.errors import CnnvizError
    from cnnviz_cli.models.layers import (
        default_layers,
        feature_map_layers,
        iter_layers,
        token_grid,
    )
    from cnnviz_cli.models.resolve import ModelRequest, resolve_model

    if model_arg is not None and ctx.get_parameter_source("model") != ParameterSource.DEFAULT:
        raise CnnvizError(
            f"Give the model once: as MODEL ({model_arg}) or as -m/--model "
            f"({options['model']}), not both."
        )
    resolved = resolve_model(ModelRequest(
        model=model_arg or options["model"], weights=options["weights"],
        preprocess=options["preprocess"], labels=options["labels"],
        unsafe_deserialization=options["unsafe_deserialization"],
        custom_objects=options["custom_objects"], signature=options["signature"],
    ))
    if "format" in resolved.details:
        _print_ports(resolved, print_json)
        return
    size = resolved.image_size()
    maps = {info.path for info in feature_map_layers(resolved.model, size)}
    picks: dict[str, list[str]] = {}
    for command, chosen in default_layers(resolved.model, size).items():
        for info in chosen:
            picks.setdefault(info.path, []).append(command)
    rows = [{"index": index, "name": info.path, "type": type(info.layer).__name__,
             "output_shape": None if info.output_shape is None else list(info.output_shape),
             "params": info.layer.count_params() if hasattr(info.layer, "count_params") else 0,
             "feature_map": info.path in maps, "auto": picks.get(info.path, []),
             "tokens": token_grid(info.output_shape) is not None}
            for index, info in enumerate(iter_layers(resolved.model))]
    if print_json:
        click.echo(json.dumps({"model": resolved.describe(), "layers": rows}, indent=2))
        return
    _print_layers(f"{resolved.source}: input {resolved.input_shape}", rows)


def _print_ports(resolved, print_json: bool) -> None:
    """The inputs and outputs of an exported model (it has no layers to list)."""
    from cnnviz_cli.models.formats import FORMAT_NAMES

    details = resolved.details
    if print_json:
        click.echo(json.dumps({"model": resolved.describe(), "layers": []}, indent=2))
        return
    layout = ", channels first (transposed)" if details["channels_first"] else ""
    click.echo(f"{resolved.source}: {FORMAT_NAMES[details['format']]} model{layout}, no layers")
    for kind in ("inputs", "outputs"):
        for port in details[kind]:
            shape = "x".join("?" if size is None else str(size) for size in port["shape"])
            click.echo(f"  {kind[:-1]:<7} {port['name']}  {shape}  {port['dtype']}")


def _print_layers(title: str, rows: list[dict]) -> None:
    """A table whose cells are never cut or wrapped, whatever the terminal's width."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("#", "name", "type", "output (HxWxC)", "params", "map", "auto"):
        table.add_column(column, justify="right" if column in ("#", "params") else "left",
                         no_wrap=True)
    for row in rows:
        shape = "?" if row["output_shape"] is None else "x".join(
            "?" if size is None else str(size) for size in row["output_shape"][1:])
        table.add_row(str(row["index"]), "  " * row["name"].count("/") + row["name"],
                      row["type"], shape, f"{row['params']:,}",
                      "tokens" if row["tokens"] else "yes" if row["feature_map"] else "",
                      ",".join(row["auto"]))
    console = Console(soft_wrap=True)
    # rich shrinks every column of a table wider than the console: make the console wide enough
    unlimited = console.options.update_width(1 << 16)
    console.width = max(console.width, table.__rich_measure__(console, unlimited).maximum)
    console.print(table)


@click.command()
@click.option("--json", "print_json", is_flag=True, help="Print the names as a JSON list.")
def models(print_json: bool) -> None:
    """List the model names -m/--model accepts (files work too).

    Names are read case-insensitively and without underscores: mobilenetv2, MobileNetV2 and
    mobilenet_v2 are the same model.

    \b
    Example:
      cnnviz models
    """
    from cnnviz_cli.models.registry import APPLICATIONS

    rows = [{"name": "demo", "constructor": None, "input_size": None,
             "description": DEMO_DESCRIPTION}]
    rows += [{"name": name, "constructor": entry.constructor, "input_size": entry.input_size,
              "any_size": entry.any_size,
              "description": f"keras.applications.{entry.constructor}"}
             for name, entry in APPLICATIONS.items()]
    if print_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"demo  ({DEMO_DESCRIPTION})")
    for row in rows[1:]:
        size = (f"any size ({row['input_size']} px by default)" if row["any_size"]
                else f"{row['input_size']}x{row['input_size']} px only")
        click.echo(f"{row['name']:<22} {row['description']}, {size}")
