"""`cnnviz layers` and `cnnviz models`: what can be visualised."""

import click

from cnnviz_cli.cli.common import model_options


@click.command()
@click.argument("model_arg", required=False, metavar="[MODEL]")
@model_options
@click.pass_context
def layers(ctx: click.Context, model_arg: str | None, **options) -> None:
    """List a model's layers, marking those usable as feature maps.

    MODEL is a name or file (same as -m; default: the demo model). Nested models are
    expanded and their layers addressed as outer/inner.

    \b
    Example:
      cnnviz layers mobilenet_v2 --weights none
    """
    from rich.console import Console
    from rich.table import Table

    from cnnviz_cli.models.layers import iter_layers
    from cnnviz_cli.models.resolve import ModelRequest, resolve_model

    resolved = resolve_model(ModelRequest(
        model=model_arg or options["model"], weights=options["weights"],
        preprocess=options["preprocess"], labels=options["labels"],
        unsafe_deserialization=options["unsafe_deserialization"],
    ))
    table = Table(title=f"{resolved.source}: input {resolved.input_shape}")
    for column in ("#", "name", "type", "output shape", "params", "map"):
        table.add_column(column, justify="right" if column in ("#", "params") else "left")
    for index, info in enumerate(iter_layers(resolved.model)):
        depth = info.path.count("/")
        shape = "?" if info.output_shape is None else str(info.output_shape)
        table.add_row(str(index), "  " * depth + info.path, type(info.layer).__name__, shape,
                      f"{info.layer.count_params():,}", "yes" if info.is_feature_map else "")
    Console(soft_wrap=True).print(table)


@click.command()
def models() -> None:
    """List the model names -m/--model accepts (files work too).

    \b
    Example:
      cnnviz models
    """
    from cnnviz_cli.models.registry import APPLICATIONS

    click.echo("demo  (bundled shapes classifier, any input size)")
    for name, entry in APPLICATIONS.items():
        click.echo(f"{name:<22} keras.applications.{entry.constructor}, {entry.input_size}px")
