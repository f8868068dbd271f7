"""What every technique returns: NumPy arrays and numbers that can show and save themselves."""

import inspect
import io
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from cnnviz_cli.api.limits import check_input_size
from cnnviz_cli.api.session import Session, command_line, run_options


@dataclass(frozen=True)
class File:
    """One file a result writes: its name under the output folder, its manifest record and how
    to draw it (a uint8 image, a list of GIF frames or a raw array, by `kind`)."""

    name: str
    record: dict
    render: Callable[[], Any]
    kind: str = "png"  # png, gif or npy
    frame_ms: int = 120


@dataclass(frozen=True)
class Series:
    """A picture of a result followed across checkpoints and training epochs: its name (stable
    from one model state to the next), how to draw it, a caption, the numbers to chart and
    what the manifest records about it."""

    name: str
    draw: Callable[[], np.ndarray]
    caption: str = ""
    numbers: dict = field(default_factory=dict)
    record: dict = field(default_factory=dict)
    step: int = 0  # its TensorBoard step: a checkpoint's index when a result holds several


@dataclass
class Result:
    """The base of every technique's result.

    `items` hold the arrays (one item per image, or one for techniques without images);
    `failures` the inputs that could not be read. A result computed with `out=` was written
    while it was computed: its items are empty and `manifest` holds what was written.
    """

    command: ClassVar[str] = ""

    items: list
    model: dict  # the model record of the manifest
    options: dict
    command_line: str
    failures: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    out: Path | None = None
    manifest: dict | None = None

    def __len__(self) -> int:
        return len(self.items)

    def _files(self, item) -> Iterator[File]:
        raise NotImplementedError

    def _picture(self, item) -> np.ndarray:
        """What `show()` draws for one item: the panel or grid the command writes."""
        return next(self._files(item)).render()

    def _series(self, item) -> Iterator[Series]:
        """The pictures of one item that evolution strips and TensorBoard follow."""
        image = getattr(item, "image", None)
        yield Series(self.command if image is None else image.key,
                     lambda: self._picture(item))

    def series(self) -> Iterator[tuple[str, Series]]:
        """Every followed picture of this result (`_series` of each item) with a unique name: a
        name repeated (several classes of one image) gets a `-2`, `-3` suffix."""
        seen: Counter = Counter()
        for item in self.items:
            for series in self._series(item):
                seen[series.name, series.step] += 1
                count = seen[series.name, series.step]
                yield series.name + (f"-{count}" if count > 1 else ""), series

    def files(self) -> Iterator[File]:
        """Every file `save()` writes, in order (nothing is drawn until `render()`)."""
        for item in self.items:
            yield from self._files(item)

    def records(self) -> list[dict]:
        """The manifest's records of the files this result writes (or wrote, with `out=`)."""
        if self.manifest is not None:
            return list(self.manifest["outputs"])
        return [{"file": file.name, **file.record} for file in self.files()]

    def write(self, outputs) -> None:
        """Draw every file and hand it to an open output folder (io.outputs.Outputs)."""
        for file in self.files():
            picture = file.render()
            if file.kind == "gif":
                outputs.save_gif(file.name, picture, file.record, frame_ms=file.frame_ms)
            elif file.kind == "npy":
                outputs.save_npy(file.name, picture, file.record)
            else:
                outputs.save_png(file.name, picture, file.record)

    def save(self, out: str | Path, force: bool = False) -> Path:
        """Write exactly what the command writes: the pictures, manifest.json and index.html
        (`force`: replace the outputs of an earlier run with other options in `out`)."""
        from cnnviz_cli.api.session import save_manifest
        from cnnviz_cli.io.manifests import begin_run
        from cnnviz_cli.io.outputs import Outputs

        options = {**self.options, "out": str(out)}
        outputs = Outputs(Path(out), self.command, options, self.command_line)
        outputs.model = self.model
        try:
            begin_run(outputs, {item["key"] for item in self._inputs()}, force=force)
            for failure in self.failures:
                outputs.fail(failure["input"], failure["error"])
            outputs.begin_batch(self._inputs())
            self.write(outputs)
            outputs.end_batch()
            outputs.flush()
            outputs.metrics.update(self.metrics)
            self.manifest = json.loads(save_manifest(outputs))
        finally:
            outputs.close()
            outputs.release()
        return outputs.root

    def _inputs(self) -> list[dict]:
        return [{"input": item.image.name, "key": item.image.key} for item in self.items
                if getattr(item, "image", None) is not None]

    def pictures(self) -> list[np.ndarray]:
        """One picture per item, as `show()` draws them."""
        if not self.items and self.out is not None:
            raise _written_error(self.out)
        return [self._picture(item) for item in self.items]

    def _repr_png_(self) -> bytes | None:
        from PIL import Image

        if not self.items:  # nothing kept (written with out=): Jupyter shows the repr
            return None
        pictures = self.pictures()
        buffer = io.BytesIO()
        Image.fromarray(stack(pictures)).save(buffer, format="PNG")
        return buffer.getvalue()

    def show(self) -> None:
        """Draw the result inline in Jupyter, else in a matplotlib window."""
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:
            get_ipython = None
        if get_ipython is not None and get_ipython() is not None:
            display(self)
            return
        import matplotlib.pyplot as plt
        from PIL import Image

        picture = np.asarray(Image.open(io.BytesIO(self._repr_png_())))
        plt.figure(figsize=(picture.shape[1] / 100, picture.shape[0] / 100))
        plt.imshow(picture)
        plt.axis("off")
        plt.show()

    def __repr__(self) -> str:
        where = f", written to {self.out}" if self.out is not None else ""
        failed = f", {len(self.failures)} failed" if self.failures else ""
        return f"<{type(self).__name__}: {len(self.items)} item(s){failed}{where}>"


def stack(pictures: list[np.ndarray]) -> np.ndarray:
    """Pictures one under the other, padded white to the widest."""
    from cnnviz_cli.render.colour import as_rgb

    width = max(picture.shape[1] for picture in pictures)
    return np.concatenate([
        np.pad(as_rgb(p), ((0, 0), (0, width - p.shape[1]), (0, 0)), constant_values=255)
        for p in pictures
    ])


def slug(text: str) -> str:
    """A file-name-safe version of a layer path or label."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def locals_of(function: Callable, scope: dict) -> dict:
    """The arguments a function was called with, from its `locals()` at the top."""
    names = inspect.signature(function).parameters
    return {name: scope[name] for name in names if name in scope}


def _written_error(out: Path) -> Exception:
    from cnnviz_cli.errors import CnnvizError

    return CnnvizError(f"This result was written to {out} as it was computed and keeps no "
                       "pictures; open the files there, or run again without out= to keep them.")


def image_words(images) -> list[str]:
    """How the command line names the inputs: the path specs, else a count."""
    if isinstance(images, str | Path):
        return [str(images)]
    if isinstance(images, list | tuple) and all(isinstance(i, str | Path) for i in images):
        return [str(image) for image in images]
    return ["<images in memory>"]


def model_words(resolved) -> dict:
    """The options that name the model, as the command line gives them."""
    words = {} if resolved.source == "demo" else {"model": resolved.source}
    if resolved.weights_file is not None:
        words["weights"] = str(resolved.weights_file)
    if resolved.preprocess_origin in ("--preprocess", "given"):
        words["preprocess"] = resolved.preprocess_name
    if resolved.runtime is not None:
        words.update(resolved.runtime.words())
    return words


def open_session(command: str, function: Callable, arguments: dict, resolved,
                 out: str | Path | None = None, progress: bool = False,
                 notify: Callable[[str], None] | None = None,
                 run_defaults: dict | None = None) -> tuple[Session, dict]:
    """A Session for `function` called with `arguments` (its own keyword arguments and the run
    options in `arguments["run"]`), and the run options with defaults filled in.

    The manifest's options and the canonical command line come from the arguments, so the
    shell and the API record the same run the same way.
    """
    from cnnviz_cli.api.formats import check_command

    check_command(resolved, command)
    defaults = {name: parameter.default
                for name, parameter in inspect.signature(function).parameters.items()
                if parameter.default is not inspect.Parameter.empty}
    streams = "run" in arguments  # a technique over images, with the run-loop options
    given = dict(arguments.pop("run", None) or {})
    run = run_options(given, run_defaults) if streams else {}
    check_input_size(resolved, run or arguments)
    images = arguments.pop("images", None)
    tensorboard = arguments.pop("tensorboard", None)
    technique = {k: _plain(v) for k, v in arguments.items()
                 if k not in ("model", "out", "progress", "preprocess", "labels")}
    options = {**technique, **{k: _plain(v) for k, v in run.items()},
               "model": resolved.source, "out": None if out is None else str(out)}
    if tensorboard is not None:
        options["tensorboard"] = str(tensorboard)
    if images is not None:
        options["images"] = image_words(images)
    words = {**technique, **model_words(resolved),
             **{k: _plain(v) for k, v in given.items()}}
    run_defaults = run_options({}, run_defaults) if streams else {}
    line = command_line(command, [] if images is None else image_words(images), words,
                        {**defaults, **run_defaults})
    session = Session(command, resolved, options, line, None if out is None else Path(out),
                      progress, notify, tensorboard)
    return session, run


def begin(table, model, images, given: dict) -> tuple:
    """Settle a run's settings from the given options (refusing unknown ones and those that
    cannot take effect), then load the model: (ResolvedModel, settings).

    The settings hold the images as the command line names them and the model options as the
    model was loaded, so that `table.command_line(settings)` replays the run.
    """
    from cnnviz_cli.api.formats import check_command
    from cnnviz_cli.api.models import load_model
    from cnnviz_cli.api.tables import model_keywords

    given = {name: value for name, value in given.items() if name != "images"}
    words = image_words(images) if images is not None and "images" in table else None
    settings = table.settle({**given, "images": words} if words else given)
    table.refuse_ignored(settings, [name for name in table.given(given)])
    resolved = load_model(model, **model_keywords(settings))
    check_command(resolved, table.command)  # before any layer lookup
    loaded = {name: value for name, value in resolved.loaded_with.items() if name in table}
    settings.update(table.settle({**given, **loaded, "images": words} if words
                                 else {**given, **loaded}))
    return resolved, settings


def start_session(table, resolved, settings: dict, progress: bool = False,
                  notify: Callable[[str], None] | None = None) -> tuple[Session, dict]:
    """A Session for a run of `table.command` with settled `settings`, and its run options.

    The manifest's options are the settings; the recorded command line comes from the table.
    """
    from cnnviz_cli.api.formats import check_command
    from cnnviz_cli.api.tables import RUN

    check_command(resolved, table.command)
    run = {option.name: settings[option.name] for option in RUN if option.name in settings}
    if run:
        run["force"] = settings["force"]
        check_input_size(resolved, run)
    options = {name: _plain(value) for name, value in settings.items()}
    options["model"] = resolved.source
    out, tensorboard = settings.get("out"), settings.get("tensorboard")
    session = Session(table.command, resolved, options, table.command_line(settings),
                      None if out is None else Path(out), progress, notify,
                      None if tensorboard is None else Path(tensorboard))
    return session, run


def _plain(value):
    """An option value as the manifest stores it (tuples as lists, paths as text)."""
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    return str(value) if isinstance(value, Path) else value


def collect(session: Session, result_type: type, **fields) -> Result:
    """The result of a finished session: its parts joined, or what it wrote."""
    text = session.finish(fields.get("metrics"))
    items = [item for part in session.parts for item in part.items]
    return result_type(
        items=items, model=session.model.describe(), options=session.options,
        command_line=session.command_line, failures=list(session.failures),
        out=None if session.outputs is None else session.outputs.root,
        manifest=None if text is None else json.loads(text), **fields,
    )


def part(session: Session, result_type: type, items: list, **fields) -> Result:
    """A part of a session's result (one batch's items), to `session.keep`."""
    return result_type(items=items, model=session.outputs.model if session.outputs else {},
                       options=session.options, command_line=session.command_line, **fields)
