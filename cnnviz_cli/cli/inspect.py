"""`cnnviz layers` and `cnnviz models`: what can be visualised."""

import json

import click
from click.core import ParameterSource

from cnnviz_cli.cli.common import model_options


@click.command()
@click.argument("model_arg", required=False, metavar="[MODEL]")
@model_options
@click.option("--json", "print_json", is_flag=True, help="Print the model and its layers as JSON.")
@click.pass_context
def layers(ctx: click.Context, model_arg: str | None, print_json: bool, **options) -> None:
    """List a model's layers, its feature maps and `-l auto` picks.

    MODEL is a name or file (same as -m, give one of the two; default: the demo model).
    Nested models are expanded and their layers addressed as outer/inner; operations written
    as code in a functional model (the `x + y` of a residual block) are listed too. A feature
    map is a (height, width, channels) output larger than 1x1 at the model's input size (224
    for models of any size). The auto column names the commands whose `-l auto` picks the
    layer. Names are never shortened, so any of them can be pasted into -l. An .onnx file is
    translated into layers named after its node outputs. An exported model without layers
    (SavedModel folder, .tflite, an .onnx file using ops cnnviz does not translate) has no
    layers to list: its inputs and outputs are printed instead.

    \b
    Example:
      cnnviz layers mobilenet_v2 --weights none
    """
    from cnnviz_cli import api
    from cnnviz_cli.errors import CnnvizError

    if model_arg is not None and ctx.get_parameter_source("model") != ParameterSource.DEFAULT:
        raise CnnvizError(
            f"Give the model once: as MODEL ({model_arg}) or as -m/--model "
            f"({options['model']}), not both."
        )
    model = options.pop("model")
    result = api.layers(model_arg or model, **options)
    if print_json:
        click.echo(json.dumps(result.record(), indent=2))
    elif "layer" in result.model.gives:
        _print_layers(f"{result.model.source}: input {result.model.input_shape}", result.layers)
    else:
        _print_ports(result.model)


def _print_ports(resolved) -> None:
    """The inputs and outputs of an exported model (it has no layers to list)."""
    from cnnviz_cli.models.formats import FORMAT_NAMES

    layout = ", channels first (transposed)" if resolved.details["channels_first"] else ""
    click.echo(f"{resolved.source}: {FORMAT_NAMES[resolved.format]}{layout}, no layers")
    for kind in ("inputs", "outputs"):
        for port in resolved.details[kind]:
            shape = "x".join("?" if size is None else str(size) for size in port["shape"])
            click.echo(f"  {kind[:-1]:<7} {port['name']}  {shape}  {port['dtype']}")
    if resolved.details.get("untranslated"):
        click.echo(f"No layers because {resolved.details['untranslated']}.")


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
    from cnnviz_cli import api

    rows = api.list_models()
    if print_json:
        click.echo(json.dumps(rows, indent=2))
        return
    demo, *applications = rows
    click.echo(f"demo  ({demo['description']})")
    for row in applications:
        size = (f"any size ({row['input_size']} px by default)" if row["any_size"]
                else f"{row['input_size']}x{row['input_size']} px only")
        click.echo(f"{row['name']:<22} {row['description']}, {size}")
