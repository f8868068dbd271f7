"""What every command shares: Click parameters from option tables, and running an API call
from the shell."""

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import click

from cnnviz_cli.cli.crash import RUNNING
from cnnviz_cli.options import Option

ARGUMENTS = "cnnviz.arguments"  # ctx.meta key: the command-line arguments, set by the group


def _set_quiet(ctx: click.Context, _param, value: bool) -> None:
    if value:
        ctx.find_root().obj["quiet"] = True


def _set_debug(ctx: click.Context, _param, value: bool) -> None:
    if value:
        ctx.find_root().ensure_object(dict)["debug"] = True


def _flag(param: click.Parameter) -> str:
    return "/".join(param.opts)


class GroupedOption(click.Option):
    """A Click option shown in a help section (`group`)."""

    def __init__(self, *args, group: str = "Options", **kwargs):
        super().__init__(*args, **kwargs)
        self.group = group


def _click_type(option: Option):
    if isinstance(option.kind, tuple):
        return click.Choice(option.kind, case_sensitive=False)
    if option.kind in (int, float) and (option.low is not None or option.high is not None):
        kind = click.IntRange if option.kind is int else click.FloatRange
        return kind(option.low, option.high, min_open=option.open_low,
                    max_open=option.open_high)
    if option.kind is Path:
        return click.Path(path_type=Path)
    return option.kind


def _declaration(option: Option) -> tuple[list[str], dict]:
    """The declarations and keywords of the Click option of a table's Option."""
    declarations = [word for word in (option.short, option.long) if word] + [option.name]
    if option.kind is bool:
        return declarations, {"is_flag": True, "default": False, "help": option.help,
                              "group": option.group}
    shown = option.show_default and option.default not in (None, (), [])
    default = tuple(option.default or ()) if option.multiple else option.default
    return declarations, {
        "type": _click_type(option), "multiple": option.multiple, "default": default,
        "show_default": shown, "metavar": option.metavar or None, "group": option.group,
        "help": option.help + (" Repeatable." if option.multiple
                               and "epeatable" not in option.help else "")}


def click_parameter(option: Option) -> click.Parameter:
    """The Click argument or option of a table's Option (values are settled by the API)."""
    if option.argument:
        return click.Argument([option.name], nargs=-1, required=True, type=click.Path())
    declarations, keywords = _declaration(option)
    return GroupedOption(declarations, **keywords)


def table_options(*options: Option) -> Callable:
    """A decorator adding the Click parameters of Options to a command without a table."""

    def apply(function: Callable) -> Callable:
        for option in reversed(options):
            if option.argument:
                function = click.argument(option.name, nargs=-1, required=True,
                                          type=click.Path())(function)
            else:
                declarations, keywords = _declaration(option)
                function = click.option(*declarations, cls=GroupedOption, **keywords)(function)
        return function

    return apply


PRINTING = (
    GroupedOption(["--json", "print_json"], is_flag=True, group="Output",
                  help="Also print the manifest to stdout."),
    GroupedOption(["-q", "--quiet"], is_flag=True, expose_value=False, callback=_set_quiet,
                  group="Output", help="No progress bar or summary."),
)


class CnnvizCommand(click.Command):
    """A command that refuses what it would silently drop, and takes `--debug` as the group does.

    A single-valued option given twice is refused (flags may repeat: they say the same thing
    twice). With `table` (a module of cnnviz_cli.api with a `table()`), the parameters are
    built from the table on first use (so `cnnviz --help` reads no table) and `--help` shows
    them in sections; the API refuses the options that cannot take effect.
    """

    def __init__(self, *args, table: str | None = None, **kwargs):
        self.table, self._built = table, False
        super().__init__(*args, **kwargs)
        self._params.append(click.Option(
            ["--debug"], is_flag=True, expose_value=False, callback=_set_debug,
            help="Show full tracebacks on errors (as `cnnviz --debug`).",
        ))

    @property
    def params(self) -> list[click.Parameter]:
        """The parameters, those of the table built on first use."""
        if self.table is not None and not self._built:
            from importlib import import_module

            self._built = True
            table = import_module(f"cnnviz_cli.api.{self.table}").table()
            self._params[:0] = [*map(click_parameter, table), *PRINTING]
        return self._params

    @params.setter
    def params(self, params: list[click.Parameter]) -> None:
        self._params = params

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None and isinstance(param, click.Option):
                sections.setdefault(getattr(param, "group", "Other"), []).append(record)
        sections["Other"] = sections.pop("Other", [])
        for name, records in sections.items():
            with formatter.section(name):
                formatter.write_dl(records)

    def invoke(self, ctx: click.Context):
        from cnnviz_cli.api.session import LISTENER

        token = LISTENER.set(echo_error)  # a run's messages go to stderr
        ctx.meta[RUNNING] = ctx  # an internal error writes its traceback into --out
        try:
            return super().invoke(ctx)
        finally:
            LISTENER.reset(token)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        arguments = list(args)  # the parser consumes the list it is given
        rest = super().parse_args(ctx, args)
        if not ctx.resilient_parsing:
            self._refuse_repeats(ctx, arguments)
        return rest

    def _refuse_repeats(self, ctx: click.Context, arguments: list[str]) -> None:
        _, _, order = self.make_parser(ctx).parse_args(args=arguments)
        for param, count in Counter(order).items():
            single = isinstance(param, click.Option) and not (
                param.multiple or param.count or param.is_flag)
            if single and count > 1:
                raise click.UsageError(
                    f"{_flag(param)} was given {count} times, but it takes one value; give it "
                    "once.", ctx)


def quiet(ctx: click.Context) -> bool:
    return bool(ctx.find_root().obj.get("quiet"))


def run_table_command(ctx: click.Context, options: dict):
    """Call the API function of the command (`cnnviz_cli.api.<command>`) with the parsed
    options: the model (and images) as its arguments, the output folder defaulting to
    cnnviz-out/COMMAND."""
    from cnnviz_cli import api

    name = ctx.command.name
    options = dict(options)
    options.pop("print_json", None)
    model = options.pop("model")
    images = () if "images" not in options else (options.pop("images"),)
    options["out"] = options["out"] or Path("cnnviz-out") / name
    return getattr(api, name)(model, *images, progress=not quiet(ctx), **options)


def echo_error(message: str) -> None:
    click.echo(message, err=True)


def finish(ctx: click.Context, result, print_json: bool) -> None:
    """Print the summary (and the manifest with --json); exit 1 when inputs failed."""
    from cnnviz_cli.io.outputs import to_json

    if print_json:
        click.echo(to_json(result.manifest))
    count = len(result.manifest["outputs"])
    if not quiet(ctx):
        files = "file" if count == 1 else "files"
        click.echo(f"Wrote {count} {files} to {result.out}/ (manifest.json, index.html); "
                   f"{model_summary(result)}.", err=True)
    if result.failures:
        echo_error(f"{len(result.failures)} input(s) failed:")
        for failure in result.failures:
            echo_error(f"  {failure['input']}: {failure['error']}")
        raise click.exceptions.Exit(1)


def model_summary(result) -> str:
    """How the inputs were fed, from the manifest's model record and the size each input
    was computed at."""
    model = result.model
    labels = model.get("num_labels")
    named = f"{labels} labels" if labels else "no labels"
    return (f"model {model['source']}, preprocess {model['preprocess']} "
            f"({model.get('preprocess_origin', 'given')}){_sizes_text(result)}, {named}")


def _sizes_text(result) -> str:
    """`, 85x128 px` (or `, 85x128 px (2 images), 128x128 px (1)`) for the computed sizes."""
    from collections import Counter

    sizes = Counter(f"{height}x{width}" for height, width in
                    (entry["size"] for entry in result.manifest.get("inputs", [])
                     if entry.get("size")))
    if not sizes:
        size = result.options.get("size")
        height, width = result.model.get("default_size") or [None, None]
        if size and None in result.model.get("input_shape", [None])[:2]:
            height, width = (size, size) if isinstance(size, int) else size
        return f", {height}x{width} px" if height and "size" in result.options else ""
    if len(sizes) == 1:
        return f", {next(iter(sizes))} px"
    return ", " + ", ".join(f"{size} px ({count})" for size, count in sizes.most_common())
