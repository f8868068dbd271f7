"""What every command shares: option decorators and the run loop (model, images, outputs)."""

import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from cnnviz_cli.errors import InputError

IMAGE_BATCH = 8


def _compose(*decorators: Callable) -> Callable:
    def apply(function: Callable) -> Callable:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


def _set_quiet(ctx: click.Context, _param, value: bool) -> None:
    if value:
        ctx.find_root().obj["quiet"] = True


model_options = _compose(
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
        help="Allow model files with Lambda layers (runs the code inside them: trusted files only).",
    ),
)

output_options = _compose(
    click.option(
        "-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=None,
        help="Output folder [default: cnnviz-out/COMMAND].",
    ),
    click.option("--json", "print_json", is_flag=True, help="Also print the manifest to stdout."),
    click.option(
        "-q", "--quiet", is_flag=True, expose_value=False, callback=_set_quiet,
        help="No progress bar or summary.",
    ),
)

image_options = _compose(
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
        "--max-pixels", type=click.IntRange(min=1), default=64_000_000, show_default=True,
        help="Refuse images that declare more pixels than this (decompression bombs).",
    ),
)


def slug(text: str) -> str:
    """A file-name-safe version of a layer path or label."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def _jsonable(value):
    if isinstance(value, tuple | list):
        return [_jsonable(item) for item in value]
    return str(value) if isinstance(value, Path) else value


class Run:
    """One command run: resolves the model, feeds images, and writes outputs and the manifest."""

    def __init__(self, ctx: click.Context):
        from cnnviz_cli.io.outputs import Outputs

        params = dict(ctx.params)
        self.command = ctx.info_name or "cnnviz"
        self.quiet = bool(ctx.find_root().obj.get("quiet"))
        self.print_json = bool(params.pop("print_json", False))
        out = params.get("out") or Path("cnnviz-out") / self.command
        params["out"] = out
        self.outputs = Outputs(out, self.command, {k: _jsonable(v) for k, v in params.items()})
        self.params = params

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

    def progress(self, items: list, description: str) -> Iterator:
        """Iterate with a rich progress bar on a terminal; silently otherwise."""
        if self.quiet or not sys.stderr.isatty() or len(items) < 2:
            yield from items
            return
        from rich.console import Console
        from rich.progress import track

        yield from track(items, description=description, console=Console(stderr=True))

    def warn(self, message: str) -> None:
        """One line on stderr (even with --quiet: failures must be seen)."""
        click.echo(message, err=True)

    def image_batches(self, resolved) -> Iterator[list]:
        """Load the IMAGES argument in batches of LoadedImage; unreadable files are recorded."""
        from cnnviz_cli.io.images import (
            LoadedImage,
            collect_image_paths,
            load_image,
            output_keys,
            resize,
        )

        paths = collect_image_paths(self.params["images"])
        size = resolved.image_size(self.params.get("size"))
        batch: list[LoadedImage] = []
        for path, key in self.progress(list(zip(paths, output_keys(paths))), self.command):
            try:
                original = load_image(path, resolved.channels, self.params["max_pixels"])
            except InputError as error:
                self.outputs.fail(str(path), str(error))
                self.warn(f"Skipped {path}: {error}")
                continue
            batch.append(LoadedImage(path, key, original, resize(original, size)))
            if len(batch) == self.params["batch_size"]:
                yield batch
                batch = []
        if batch:
            yield batch

    def finish(self) -> None:
        """Write the manifest, report, and exit 1 when some inputs failed."""
        text = self.outputs.write_manifest()
        if self.print_json:
            click.echo(text)
        count, failed = len(self.outputs.records), len(self.outputs.failures)
        if not self.quiet:
            click.echo(f"Wrote {count} files to {self.outputs.root}/ (manifest.json).", err=True)
        if failed:
            self.warn(f"{failed} input(s) failed:")
            for failure in self.outputs.failures:
                self.warn(f"  {failure['input']}: {failure['error']}")
            raise click.exceptions.Exit(1)
