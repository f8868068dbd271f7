"""What every command shares: option decorators and the run loop (model, images, outputs)."""

import re
import shlex
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import click
from click.core import ParameterSource

from cnnviz_cli.errors import CnnvizError, InputError, Interrupted
from cnnviz_cli.io import DEFAULT_MAX_PIXELS
from cnnviz_cli.specs import FILTER_GRAMMAR, filter_ranges

IMAGE_BATCH = 8
MANIFEST_INTERVAL = 2.0  # seconds between rewrites of manifest.json during a run
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


class CnnvizCommand(click.Command):
    """A command that refuses what it would silently drop, and takes `--debug` as the group does.

    A single-valued option given twice is refused (flags may repeat: they say the same thing
    twice), and so is a given option that cannot take effect with the others (`rules`).
    """

    def __init__(self, *args, rules: Iterable[OnlyWhen] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.rules = tuple(rules)
        self.params.append(click.Option(
            ["--debug"], is_flag=True, expose_value=False, callback=_set_debug,
            help="Show full tracebacks on errors (as `cnnviz --debug`).",
        ))

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
        help="A keras.applications name (see `cnnviz models`), a .keras/.h5 file, or `demo`.",
    ),
    click.option(
        "--weights", metavar="imagenet|none|FILE",
        help="Weights for a named model (default imagenet), or a weights file to load.",
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
)

output_options = compose(
    click.option(
        "-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=None,
        help="Output folder, not an input folder or inside one [default: cnnviz-out/COMMAND].",
    ),
    click.option("--json", "print_json", is_flag=True, help="Also print the manifest to stdout."),
    click.option(
        "-q", "--quiet", is_flag=True, expose_value=False, callback=_set_quiet,
        help="No progress bar or summary.",
    ),
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


def slug(text: str) -> str:
    """A file-name-safe version of a layer path or label."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def command_line(arguments: list[str]) -> str:
    """`cnnviz ARGUMENTS...` without the output folder (-o/--out DIR), so that a run's pictures,
    provenance included, do not depend on where they are written."""
    kept, rest = [], iter(arguments)
    for argument in rest:
        if argument == "--":
            kept += [argument, *rest]
        elif argument in ("-o", "--out"):
            next(rest, None)
        elif not argument.startswith(("-o", "--out=")):
            kept.append(argument)
    return shlex.join(["cnnviz", *kept])


def _jsonable(value):
    if isinstance(value, tuple | list):
        return [_jsonable(item) for item in value]
    return str(value) if isinstance(value, Path) else value


def _input_folders(specs: Iterable[str]) -> list[Path]:
    """The folders IMAGES searches: folders given, and the fixed base of recursive `**` globs."""
    folders = []
    for spec in specs:
        if "**" in spec:
            base = Path(spec.split("**", 1)[0] or ".")
            folders.append(base if base.is_dir() else base.parent)
        elif Path(spec).is_dir():
            folders.append(Path(spec))
    return folders


def _check_out_folder(out: Path, specs: Iterable[str]) -> None:
    """Refuse an --out that is an input folder or inside one: outputs would become inputs."""
    target = out.resolve()
    for folder in _input_folders(specs):
        resolved = folder.resolve()
        if target == resolved or resolved in target.parents:
            place = "is" if target == resolved else "is inside"
            raise CnnvizError(
                f"--out {out} {place} the input folder {folder}, so later runs would read the "
                "outputs as images; choose an --out outside it."
            )


def _interrupt(number: int, _frame) -> None:
    raise Interrupted(number)


def _load_input(item: tuple[Path, str], channels: int, size: tuple[int, int], max_pixels: int):
    from cnnviz_cli.io.images import LoadedImage, load_image, resize

    path, key = item
    original = load_image(path, channels, max_pixels)
    return LoadedImage(path, key, original, resize(original, size))


class Run:
    """One command run: resolves the model, streams images, writes outputs and the manifest.

    Images are decoded in background threads ahead of the model and files are encoded and
    written behind it; `manifest.json` is rewritten every few seconds, and on SIGINT/SIGTERM
    what finished is kept in it before the exit (130/143).
    """

    def __init__(self, ctx: click.Context):
        from cnnviz_cli.io.outputs import Outputs

        params = dict(ctx.params)
        self.command = ctx.info_name or "cnnviz"
        self.quiet = bool(ctx.find_root().obj.get("quiet"))
        self.print_json = bool(params.pop("print_json", False))
        out = params.get("out") or Path("cnnviz-out") / self.command
        params["out"] = out
        if "images" in params:
            _check_out_folder(out, params["images"])
        self.outputs = Outputs(out, self.command, {k: _jsonable(v) for k, v in params.items()},
                               command_line(ctx.meta.get(ARGUMENTS, [self.command])))
        self.params = params
        self.finished = False
        self._stream: Iterator | None = None
        self._handlers: dict = {}
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self._handlers[number] = signal.signal(number, _interrupt)
        ctx.call_on_close(self._close)

    def load_model(self):
        """Resolve `--model` and friends into a ResolvedModel (and note it in the manifest)."""
        from cnnviz_cli.models.resolve import ModelRequest, resolve_model

        request = ModelRequest(
            model=self.params["model"],
            weights=self.params.get("weights"),
            preprocess=self.params.get("preprocess"),
            labels=self.params.get("labels"),
            unsafe_deserialization=self.params.get("unsafe_deserialization", False),
        )
        with self.status(f"Loading model {request.model}"):
            resolved = resolve_model(request)
        self.outputs.model = resolved.describe()
        return resolved

    def status(self, message: str):
        """A spinner on a terminal while something slow happens without steps."""
        from contextlib import nullcontext

        if self.quiet or not sys.stderr.isatty():
            return nullcontext()
        from rich.console import Console

        return Console(stderr=True).status(message)

    def progress(self, items: Iterable, description: str, total: int | None = None) -> Iterator:
        """Iterate with a rich progress bar on a terminal; silently otherwise."""
        total = len(items) if total is None else total
        if self.quiet or not sys.stderr.isatty() or total < 2:
            yield from items
            return
        from rich.console import Console
        from rich.progress import track

        yield from track(items, description=description, total=total, console=Console(stderr=True))

    def warn(self, message: str) -> None:
        """One line on stderr (even with --quiet: failures must be seen)."""
        click.echo(message, err=True)

    def image_batches(self, resolved) -> Iterator[list]:
        """Stream the IMAGES argument as batches of LoadedImage, full except the last.

        Decoding runs in background threads a few batches ahead. Unreadable files are recorded
        and skipped (with --fail-fast: the run stops); --shard and --skip-existing narrow the list.
        """
        import warnings
        from functools import partial

        from PIL import Image

        from cnnviz_cli.io.background import prefetch

        # Pillow warns about images over its own limit; load_image refuses them in one line
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

        items = self._selected_inputs()
        size = resolved.image_size(self.params.get("size"))
        batch_size = self.params["batch_size"]
        load = partial(_load_input, channels=resolved.channels, size=size,
                       max_pixels=self.params["max_pixels"])
        self._stream = prefetch(load, items, ahead=2 * batch_size)
        batch: list = []
        for (path, _key), future in self.progress(self._stream, self.command, len(items)):
            try:
                batch.append(future.result())
            except InputError as error:
                self._failed(path, error)
                continue
            if len(batch) == batch_size:
                yield from self._hand_out(batch)
                batch = []
        if batch:
            yield from self._hand_out(batch)

    def _selected_inputs(self) -> list[tuple[Path, str]]:
        from cnnviz_cli.io.images import collect_image_paths, output_keys
        from cnnviz_cli.io.manifests import finished_work

        paths = collect_image_paths(self.params["images"])
        # keys come from all inputs, so a shard names its folders as the whole run would
        items = list(zip(paths, output_keys(paths), strict=True))
        if self.params.get("shard"):
            index, count = self.params["shard"]
            items = items[index - 1 :: count]
        if self.params.get("skip_existing"):
            work = finished_work(self.outputs.root, self.command, self.outputs.options)
            wanted = {key for _, key in items}
            done = [item for item in work.inputs if item["key"] in wanted]
            done_keys = {item["key"] for item in done}
            self.outputs.carry([r for r in work.records if r["file"].split("/", 1)[0] in done_keys],
                               done)
            items = [item for item in items if item[1] not in done_keys]
            if done and not self.quiet:
                self.warn(f"Skipping {len(done)} image(s) an earlier run finished.")
        return items

    def _failed(self, path: Path, error: InputError) -> None:
        self.outputs.fail(str(path), str(error))
        if self.params.get("fail_fast"):
            raise InputError(f"Stopped at the first bad input (--fail-fast): {error}")
        self.warn(f"Skipped {path}: {error}")

    def _hand_out(self, batch: list) -> Iterator[list]:
        self.outputs.begin_batch([{"input": str(image.path), "key": image.key} for image in batch])
        yield batch
        self.outputs.end_batch()
        self.outputs.write_manifest(min_interval=MANIFEST_INTERVAL)

    def _save(self) -> str:
        """Write manifest.json and index.html; return the manifest's text."""
        import json

        from cnnviz_cli.io.manifests import merge_manifests
        from cnnviz_cli.io.outputs import REPORT, write_atomic
        from cnnviz_cli.render.report import render_report

        text = self.outputs.write_manifest()
        page = render_report(merge_manifests([(json.loads(text), ".")]))
        write_atomic(self.outputs.root / REPORT, page.encode("utf-8"))
        return text

    def finish(self) -> None:
        """Wait for the writers, write the manifest and report; exit 1 when inputs failed."""
        self.outputs.end_batch()  # the command is done with every batch it took
        self.outputs.flush()
        text = self._save()
        self.finished = True
        if self.print_json:
            click.echo(text)
        count, failed = len(self.outputs.records), len(self.outputs.failures)
        if not self.quiet:
            click.echo(
                f"Wrote {count} files to {self.outputs.root}/ (manifest.json, index.html).",
                err=True,
            )
        if failed:
            self.warn(f"{failed} input(s) failed:")
            for failure in self.outputs.failures:
                self.warn(f"  {failure['input']}: {failure['error']}")
            raise click.exceptions.Exit(1)

    def _close(self) -> None:
        """On any exit: stop the threads; after an error or a signal, keep what finished."""
        for number, handler in self._handlers.items():
            signal.signal(number, handler)
        if self._stream is not None:
            self._stream.close()
        self.outputs.close()
        if self.finished:
            return
        if not self.outputs.changed:  # stopped before any output: leave no empty --out behind
            self.outputs.remove_if_unused()
            return
        self._save()
        self.warn(
            f"Stopped early; the {len(self.outputs.records)} finished files are listed in "
            f"{self.outputs.root}/manifest.json."
        )
