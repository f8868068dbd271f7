"""The docs pages that are read off the code, never written by hand: the options reference of
every command and the table of `cnnviz cam` methods.

A command whose Click command has a `table` (see cli/common.py `CnnvizCommand`) is described
from its options.Table: groups, ranges, choices, defaults and "only with" rules; any other
command from its Click parameters. The site's hook (site.py) adds these to the build.
"""

from importlib import import_module
from pathlib import Path

import click

from cnnviz_cli.options import Option, Table

NEEDS = {  # what a method needs of the model (Method.needs)
    "layer": "a layer and its gradients",
    "gradient": "input gradients",
    "forward": "scores only",
}

KINDS = {int: "integer", float: "number", str: "text", Path: "path"}


def cell(text: str) -> str:
    """Text that fits in one cell of a Markdown table."""
    return " ".join(str(text).split()).replace("|", "\\|")


def table_of(command: click.Command) -> Table | None:
    """The options.Table a command is built from: its `table` is a function returning it or
    the name of the cnnviz_cli.api module whose `table()` does; None for other commands."""
    table = getattr(command, "table", None)
    if table is None:
        return None
    if isinstance(table, str):
        return import_module(f"cnnviz_cli.api.{table}").table()
    return table()


def _value_text(option: Option) -> str:
    if option.kind is bool:
        return "flag"
    if isinstance(option.kind, tuple):
        return " | ".join(f"`{choice}`" for choice in option.kind)
    shown = f"`{option.metavar}`" if option.metavar else KINDS.get(option.kind, "")
    if option.kind in (int, float) and (option.low is not None or option.high is not None):
        shown += f" ({option.range_text().removeprefix('it must be ')})"
    return shown


def _default_text(default, multiple: bool = False) -> str:
    if default is None or default is False or (isinstance(default, tuple | list)
                                                and not default):
        return ""
    if multiple and not isinstance(default, str):
        return ", ".join(f"`{value}`" for value in default)
    return f"`{default}`"


def _row_from_option(param: click.Option, option: Option) -> tuple[str, str, str, str]:
    help_text = option.help
    if option.multiple and "epeatable" not in help_text:
        help_text += " Repeatable."
    if option.when:
        help_text += f" Applies only {option.when}."
    default = _default_text(option.default, option.multiple) if option.show_default else ""
    return _flags(param), _value_text(option), default, help_text


def _row_from_click(param: click.Option, rules: dict[str, str]) -> tuple[str, str, str, str]:
    kind = param.type
    if param.is_flag:
        value = "flag"
    elif isinstance(kind, click.Choice):
        value = " | ".join(f"`{choice}`" for choice in kind.choices)
    else:
        value = f"`{param.metavar}`" if param.metavar else kind.name.removesuffix(" range")
        if isinstance(kind, click.IntRange | click.FloatRange):
            value += f" ({_range_text(kind)})"
    default = ""
    if param.show_default and not param.is_flag:
        default = _default_text(param.default, param.multiple)
    help_text = param.help or ""
    if param.name in rules:
        help_text += f" Applies only {rules[param.name]}."
    return _flags(param), value, default, help_text


def _range_text(kind: click.IntRange | click.FloatRange) -> str:
    parts = []
    if kind.min is not None:
        parts.append(f"{'>' if kind.min_open else '>='} {kind.min}")
    if kind.max is not None:
        parts.append(f"{'<' if kind.max_open else '<='} {kind.max}")
    return " and ".join(parts)


def _flags(param: click.Option) -> str:
    return ", ".join(f"`{flag}`" for flag in [*param.opts, *param.secondary_opts])


def _options(name: str, command: click.Command) -> list[click.Option]:
    """The options a command shows in --help (help itself left out: every command has it)."""
    context = click.Context(command, info_name=name)
    help_option = command.get_help_option(context)
    return [param for param in command.get_params(context) if isinstance(param, click.Option)
            and not param.hidden and param is not help_option]


def options_of(name: str, command: click.Command) -> dict[str, list[tuple[str, ...]]]:
    """The rows (flags, value, default, help) of a command's options, by help section."""
    table = table_of(command)
    specs = {option.name: option for option in table} if table is not None else {}
    rules = {param: rule.when for rule in getattr(command, "rules", ()) for param in rule.names}
    sections: dict[str, list[tuple[str, ...]]] = {}
    for param in _options(name, command):
        option = specs.get(param.name)
        row = (_row_from_option(param, option) if option is not None
               else _row_from_click(param, rules))
        group = option.group if option is not None else getattr(param, "group", "Other")
        sections.setdefault(group, []).append(row)
    sections["Other"] = sections.pop("Other", [])
    sections = {group: rows for group, rows in sections.items() if rows}
    return {"Options": sections["Other"]} if list(sections) == ["Other"] else sections


def command_section(name: str, command: click.Command) -> str:
    """The reference of one command: its usage line, summary, arguments and options."""
    context = click.Context(command, info_name=f"cnnviz {name}")
    usage = " ".join([f"cnnviz {name}", *command.collect_usage_pieces(context)])
    lines = [f"## `cnnviz {name}`", "", f"`{usage}`", "", cell(command.get_short_help_str(200)),
             ""]
    table = table_of(command)
    source = "its options table" if table is not None else "its Click parameters"
    lines += [f"*Read from {source}; `cnnviz {name} --help` shows the same.*", ""]
    for option in (option for option in table or () if option.argument):
        lines += [f"`{option.metavar or option.name.upper()}`: {cell(option.help)}", ""]
    for group, rows in options_of(name, command).items():
        lines += [f"**{group}**", "", "| option | value | default | what it does |",
                  "| --- | --- | --- | --- |"]
        lines += ["| " + " | ".join(cell(part) for part in row) + " |" for row in rows]
        lines.append("")
    return "\n".join(lines)


def shared_options(commands: dict[str, click.Command]) -> str:
    """Which commands take each option that more than one command takes."""
    takers: dict[str, list[str]] = {}
    for name, command in commands.items():
        for param in _options(name, command):
            takers.setdefault(_flags(param), []).append(f"[`{name}`](#cnnviz-{name})")
    lines = ["| option | taken by |", "| --- | --- |"]
    lines += [f"| {cell(flags)} | {', '.join(names)} |"
              for flags, names in sorted(takers.items(), key=lambda item: -len(item[1]))
              if len(names) > 1]
    return "\n".join(lines)


def options_page() -> str:
    """The options reference: every command of `cnnviz`, read from the code."""
    from cnnviz_cli.cli import cli

    commands = dict(sorted(cli.commands.items()))
    parts = [
        "# Options reference", "",
        "Generated from the commands' option tables when the site is built (the same tables "
        "make `--help`, the Python keywords and the manifest), so it cannot drift from the "
        "code. An option means the same in every command that takes it. Every command also "
        "takes `-h`, `--help`.", "",
        "## Options several commands take", "", shared_options(commands), "",
    ]
    parts += [command_section(name, command) for name, command in commands.items()]
    return "\n".join(parts)


def methods_table() -> str:
    """The `cnnviz cam` methods as the registry declares them (techniques/methods/)."""
    from cnnviz_cli.techniques.cam import MODIFIERS, methods

    lines = ["| method | needs | its options | signed | what it computes |",
             "| --- | --- | --- | --- | --- |"]
    for spec in methods().values():
        options = ", ".join(f"`{option.long}`" + (f" ({_default_text(option.default)})"
                                                   if _default_text(option.default) else "")
                            for option in spec.options)
        lines.append("| " + " | ".join(cell(part) for part in (
            f"`{spec.name}`", NEEDS.get(spec.needs, spec.needs), options or "none",
            "yes" if spec.signed else "no", spec.summary or "")) + " |")
    if MODIFIERS:
        lines += ["", "| modifier | option | what it changes |", "| --- | --- | --- |"]
        lines += [f"| `{name}` | `{extra.option.long}` | {cell(extra.option.help)} |"
                  for name, extra in MODIFIERS.items()]
    return "\n".join(lines)
