"""What every command shares: option decorators, and running an API call from the shell."""

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import click
from click.core import ParameterSource

from cnnviz_cli.cli.crash import RUNNING
from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.io import DEFAULT_MAX_PIXELS
from cnnviz_cli.options import Option
from cnnviz_cli.specs import FILTER_GRAMMAR, filter_ranges

IMAGE_BATCH = 8
ARGUMENTS = "cnnviz.arguments"  # ctx.meta key: the command-line arguments, set by the group


def compose(*decorators: Callable) -> Callable:
    def apply(function: Callable) -> Callable:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


def _set_quiet(ctx: click.Context, _param, value: bool) -> None:
    if value:
        ctx.find_root().obj["quiet"] = True


def parse_shard(_ctx: click.Context | None, _param, value: str | None) -> tuple[int, int] | None:
    """`--shard K/N` -> (K, N) with 1 <= K <= N (a Click callback)."""
    if value is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", value)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise click.BadParameter(
            f"expected K/N with 1 <= K <= N, such as 2/8, but got {value!r}."
        )
    return int(match[1]), int(match[2])


def _set_debug(ctx: click.Context, _param, value: bool) -> None:
    if value:
        ctx.find_root().ensure_object(dict)["debug"] = True


def _filter_spec(_ctx: click.Context, _param, values: tuple[str, ...]) -> str | None:
    """Repeated `--filter` values -> one comma list, its grammar checked (a Click callback)."""
    if not values:
        return None
    spec = ",".join(values)
    try:
        filter_ranges(spec)
    except CnnvizError as error:
        raise click.BadParameter(str(error)) from None
    return spec


def filter_option(help_text: str) -> Callable:
    """`--filter SPEC`, repeatable: the values add up (`--filter 1 --filter 5-9` = `1,5-9`)."""
    return click.option("--filter", "filter_spec", multiple=True, metavar="SPEC",
                        callback=_filter_spec,
                        help=f"{help_text} SPEC is {FILTER_GRAMMAR}; repeatable.")


def mentions(values: Iterable[str], *names: str) -> bool:
    """Whether values of a repeatable comma-list option name one of `names`, or `all`."""
    given = {item.strip().lower() for value in values for item in value.split(",")}
    return bool(given & {*names, "all"})


@dataclass(frozen=True)
class OnlyWhen:
    """Options (parameter names) that take effect only when `condition(params)` holds.

    `when` completes "--OPTION applies only ...", e.g. "with --method inversion".
    """

    names: tuple[str, ...]
    when: str
    condition: Callable[[dict], bool]


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


def click_parameter(option: Option) -> click.Parameter:
    """The Click argument or option of a table's Option (values are settled by the API)."""
    if option.argument:
        return click.Argument([option.name], nargs=-1, required=True, type=click.Path())
    declarations = [word for word in (option.short, option.long) if word] + [option.name]
    if option.kind is bool:
        return GroupedOption(declarations, is_flag=True, default=False, help=option.help,
                             group=option.group)
    shown = option.show_default and option.default not in (None, (), [])
    default = tuple(option.default or ()) if option.multiple else option.default
    return GroupedOption(declarations, type=_click_type(option), multiple=option.multiple,
                         default=default, show_default=shown, metavar=option.metavar or None,
                         help=option.help + (" Repeatable." if option.multiple
                                             and "epeatable" not in option.help else ""),
                         group=option.group)


PRINTING = (
    GroupedOption(["--json", "print_json"], is_flag=True, group="Output",
                  help="Also print the manifest to stdout."),
    GroupedOption(["-q", "--quiet"], is_flag=True, expose_value=False, callback=_set_quiet,
                  group="Output", help="No progress bar or summary."),
)


class CnnvizCommand(click.Command):
    """A command that refuses what it would silently drop, and takes `--debug` as the group does.

    A single-valued option given twice is refused (flags may repeat: they say the same thing
    twice), and so is a given option that cannot take effect with the others (`rules`). With
    `table` (a function returning an options.Table), the parameters are built from the table
    on first use (so `cnnviz --help` reads no table) and `--help` shows them in sections.
    """

    def __init__(self, *args, rules: Iterable[OnlyWhen] = (), table: Callable | None = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.rules = tuple(rules)
        self.table = table
        self.params.append(click.Option(
            ["--debug"], is_flag=True, expose_value=False, callback=_set_debug,
            help="Show full tracebacks on errors (as `cnnviz --debug`).",
        ))

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        if self.table is not None and not getattr(self, "_built", False):
            self._built = True
            self.params[:0] = [*map(click_parameter, self.table()), *PRINTING]
        return super().get_params(ctx)

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
            self._refuse_ignored(ctx)
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

    def _refuse_ignored(self, ctx: click.Context) -> None:
        params = {param.name: param for param in self.params}
        for rule in self.rules:
            if rule.condition(ctx.params):
                continue
            for name in rule.names:
                if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT,
                                                          ParameterSource.DEFAULT_MAP):
                    raise click.UsageError(
                        f"{_flag(params[name])} applies only {rule.when}, so it would be "
                        "ignored here; leave it out.", ctx)


model_options = compose(
    click.option(
        "-m", "--model", default="demo", show_default=True, metavar="NAME|FILE",
        help="A keras.applications name (see `cnnviz models`), a .keras/.h5 file, a SavedModel "
        "folder, a .tflite or .onnx file, or `demo`.",
    ),
    click.option(
        "--weights", metavar="imagenet|none|FILE",
        help="imagenet (the default) or none for a named model; a weights file for any model "
        "(demo, name or file).",
    ),
    click.option(
        "--preprocess", metavar="NAME",
        help="Input preprocessing for a model file: none, unit (x/255), symmetric (x/127.5-1), "
        "caffe, torch, or a model name such as resnet50.",
    ),
    click.option(
        "--labels", type=click.Path(dir_okay=False), help="Class names: text (one a line) or JSON."
    ),
    click.option(
        "--unsafe-deserialization", is_flag=True,
        help="Allow model files with Lambda layers (runs the code inside them: trusted files "
        "only).",
    ),
    click.option(
        "--custom-objects", multiple=True, metavar="FILE.py|MODULE",
        help="Import this Python file or module before loading a model file, for its custom "
        "layers and classes; this RUNS its code (trusted code only). Repeatable.",
    ),
    click.option(
        "--signature", metavar="NAME",
        help="The function of a SavedModel folder that is the model [default: serving_default].",
    ),
)

device_options = compose(
    click.option(
        "--device", default="auto", show_default=True, metavar="auto|cpu|gpu|gpu:N",
        help="Where to compute: auto = the first GPU TensorFlow sees, else the CPU.",
    ),
    click.option(
        "--gpu-memory", type=click.IntRange(min=1), metavar="MB",
        help="Cap the GPU memory this run takes [default: grow on demand, so a training job "
        "can share the GPU].",
    ),
)

precision_option = click.option(
    "--precision", type=click.Choice(["float32", "mixed"]), default="float32", show_default=True,
    help="mixed: the model computes in float16/bfloat16 (GPU only); scores, gradients and maps "
    "stay float32.",
)

computing_model_options = compose(model_options, device_options, precision_option)
"""The model options of a command that runs the model: which model, where, in what precision."""

output_options = compose(
    click.option(
        "-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=None,
        help="Output folder, not an input folder or inside one [default: cnnviz-out/COMMAND].",
    ),
    click.option("--json", "print_json", is_flag=True, help="Also print the manifest to stdout."),
    click.option(
        "--tensorboard", metavar="LOGDIR", type=click.Path(file_okay=False, path_type=Path),
        help="Also write the pictures and numbers as TensorBoard summaries into LOGDIR (step: "
        "the --checkpoint index, else 0); view with `tensorboard --logdir LOGDIR`.",
    ),
    click.option(
        "--force", is_flag=True,
        help="Replace the outputs of an earlier run with another command or options in --out "
        "[default: refuse such a folder].",
    ),
    click.option(
        "-q", "--quiet", is_flag=True, expose_value=False, callback=_set_quiet,
        help="No progress bar or summary.",
    ),
)

checkpoint_option = click.option(
    "--checkpoint", "checkpoints", multiple=True, metavar="FILE", type=click.Path(path_type=Path),
    help="A model or weights file saved during training; repeat in training order to draw one "
    "row per checkpoint and an animated GIF.",
)

image_options = compose(
    click.argument("images", nargs=-1, required=True),
    click.option(
        "--size", type=click.IntRange(min=8),
        help="Input side in pixels for models that take any size [default: the model's].",
    ),
    click.option(
        "--batch-size", type=click.IntRange(min=1), default=IMAGE_BATCH, show_default=True,
        help="Images per compiled pass.",
    ),
    click.option(
        "--max-pixels", type=click.IntRange(min=1), default=DEFAULT_MAX_PIXELS, show_default=True,
        help="Refuse images that declare more pixels than this (decompression bombs).",
    ),
    click.option(
        "--skip-existing", is_flag=True,
        help="Resume: leave out images an earlier run into --out finished (same options).",
    ),
    click.option(
        "--fail-fast", is_flag=True,
        help="Stop at the first unreadable image [default: go on, list failures, exit 1].",
    ),
    click.option(
        "--shard", metavar="K/N", callback=parse_shard,
        help="Process only slice K of N (1 <= K <= N) of the sorted images, e.g. a job-array "
        "index; merge the shards' folders with `cnnviz report`.",
    ),
)


RUN_KEYS = ("size", "batch_size", "max_pixels", "skip_existing", "fail_fast", "shard")


def load_model(options: dict):
    """The model the model options name (a ResolvedModel), one error sentence otherwise."""
    from cnnviz_cli.api.models import load_model as load

    return load(options["model"], weights=options.get("weights"),
                preprocess=options.get("preprocess"), labels=options.get("labels"),
                unsafe_deserialization=options.get("unsafe_deserialization", False),
                custom_objects=options.get("custom_objects", ()),
                signature=options.get("signature"),
                device=options["device"], gpu_memory=options["gpu_memory"],
                precision=options.get("precision", "float32"))


def quiet(ctx: click.Context) -> bool:
    return bool(ctx.find_root().obj.get("quiet"))


def run_settings(ctx: click.Context, options: dict, images: bool = True) -> dict:
    """The keyword arguments every API call of a command gets: where to write, whether to
    show progress, and (for commands over images) the run-loop options."""
    command = ctx.info_name or "cnnviz"
    settings = {"out": options.get("out") or Path("cnnviz-out") / command,
                "tensorboard": options.get("tensorboard"), "progress": not quiet(ctx),
                "force": options["force"]}
    if images:
        settings.update({key: options[key] for key in RUN_KEYS})
    return settings


def run_table_command(ctx: click.Context, function: Callable, options: dict):
    """Call the API function of a table command with the parsed options: the model and images
    as its arguments, the output folder defaulting to cnnviz-out/COMMAND."""
    options = dict(options)
    options.pop("print_json", None)
    model, images = options.pop("model"), options.pop("images")
    options["out"] = options["out"] or Path("cnnviz-out") / (ctx.info_name or "cnnviz")
    return function(model, images, progress=not quiet(ctx), **options)


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
