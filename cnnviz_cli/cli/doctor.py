"""`cnnviz doctor` and `cnnviz --version`: what this machine gives cnnviz."""

import json

import click


def print_version(ctx: click.Context, _param, value: bool) -> None:
    """`--version`: cnnviz, TensorFlow and Keras on one line (an eager Click callback)."""
    if not value or ctx.resilient_parsing:
        return
    from cnnviz_cli.api.doctor import version_line

    click.echo(version_line())
    ctx.exit()


version_option = click.option(
    "--version", is_flag=True, expose_value=False, is_eager=True, callback=print_version,
    help="Show the versions of cnnviz, TensorFlow, Keras and Python, and exit.")


@click.command()
@click.option("--json", "print_json", is_flag=True, help="Print the checks as JSON.")
def doctor(print_json: bool) -> None:
    """What cnnviz finds here: versions, devices, caches, fonts.

    Lists Python, cnnviz, TensorFlow, Keras, NumPy, Pillow, matplotlib, onnxruntime and
    tensorboard versions, the devices TensorFlow sees and whether its CUDA build is installed,
    whether the Keras ImageNet weights cache holds files (offline machines), the report's font
    and a writable temporary folder. Paste its output into bug reports. Exit 1 when something
    a command needs is missing.

    \b
    Example:
      cnnviz doctor --json
    """
    from cnnviz_cli.api.doctor import doctor as checks

    found = checks()
    if print_json:
        click.echo(json.dumps({check.name: check.as_dict() for check in found}, indent=2))
    else:
        _print_table(found)
    if any(check.needed and not check.ok for check in found):
        raise click.exceptions.Exit(1)


def _print_table(checks) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="cnnviz doctor")
    for column in ("check", "found", "", "what to do"):
        table.add_column(column, overflow="fold")
    for check in checks:
        mark = "ok" if check.ok else "MISSING" if check.needed else "optional"
        table.add_row(check.name, check.found, mark, "" if check.ok else check.hint)
    Console().print(table)
