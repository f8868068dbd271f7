"""The run loop of every technique, without Click: streamed images in, files and manifest out.

A `Session` decodes images in background threads ahead of the model. With an output folder it
opens (creates and locks) the folder only once the model and layers resolved, writes each
batch's files behind the model (atomically, in background threads), rewrites `manifest.json`
twice a second at most and, after an error, a failed write or SIGINT/SIGTERM, keeps what finished.
Without one it keeps the results in memory for the caller.
"""

import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from pathlib import Path

from cnnviz_cli.api.inputs import ImageSource, collect_inputs, input_folders, load_input
from cnnviz_cli.errors import CnnvizError, InputError, Interrupted, WriteError

MANIFEST_INTERVAL = 0.5  # seconds between rewrites of manifest.json (at least; see Outputs)
LISTENER: ContextVar[Callable[[str], None] | None] = ContextVar("cnnviz_listener", default=None)
"""Who hears a run's messages when its caller gives no `notify` (the command line sets it)."""
SETTINGS_SOURCES: ContextVar[Callable[[], dict | None] | None] = ContextVar(
    "cnnviz_settings_sources", default=None)
"""Where each setting came from (command line, environment, profile, file, default), for the
manifest's `settings_sources` (the command line sets it)."""


def _interrupt(number: int, _frame) -> None:
    raise Interrupted(number)


class Session:
    """One run of a technique over images (or none): the model, the inputs and the outputs.

    Use it as a context manager. `batches()` yields lists of LoadedImage; `keep(part)` writes a
    part of the result into the output folder, or keeps it in memory when there is none.
    """

    def __init__(self, command: str, model, options: dict, command_line: str,
                 out: Path | None = None, progress: bool = False,
                 notify: Callable[[str], None] | None = None, tensorboard: Path | None = None):
        self.command = command
        self.model = model
        self.options = options
        self.command_line = command_line
        self.progress_bar = progress
        self.notify = notify or LISTENER.get() or (self._print if progress else None)
        self.parts: list = []
        self.failures: list[dict] = []
        self.outputs = None
        self.finished = False
        self._stream = None
        self._handlers: dict = {}
        self.summaries = None
        if tensorboard is not None:
            from cnnviz_cli.io.tensorboard import Summaries

            self.summaries = Summaries(tensorboard)
        if out is not None:
            self._open(Path(out))

    def _open(self, out: Path) -> None:
        from cnnviz_cli.io.manifests import Pace
        from cnnviz_cli.io.outputs import Outputs

        self._pace = Pace(MANIFEST_INTERVAL)
        images = self.options.get("images") or self.options.get("from_images")
        if isinstance(images, list) and all(isinstance(spec, str) for spec in images):
            _check_out_folder(out, images)
        self.outputs = Outputs(out, self.command, self.options, self.command_line, self.warn)
        self.outputs.model = self.model.describe()
        sources = SETTINGS_SOURCES.get()
        self.outputs.sources = sources() if sources else None
        if self.model.runtime is not None:
            self.outputs.runtime = self.model.runtime.describe()
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self._handlers[number] = signal.signal(number, _interrupt)

    def __enter__(self) -> "Session":
        self._placement = placement(self.model.runtime)
        self._placement.__enter__()
        return self

    def __exit__(self, kind, error, _traceback) -> None:
        try:
            self.close()
        finally:
            self._placement.__exit__(None, None, None)
        if isinstance(error, WriteError) and self.outputs is not None:
            raise WriteError(self.outputs.failure_sentence()) from None

    def _start(self, keys: frozenset[str] = frozenset(), skip_existing: bool = False) -> set[str]:
        """Open the output folder before its first file: lock it, settle what an earlier run
        left there, write the first manifest. Returns the inputs to leave out."""
        from cnnviz_cli.io.manifests import begin_run

        if self.outputs is None or self.outputs.opened:
            return set()
        return begin_run(self.outputs, set(keys), skip_existing,
                         bool(self.options.get("force")))

    @staticmethod
    def _print(message: str) -> None:
        print(message, file=sys.stderr)

    def warn(self, message: str) -> None:
        """A line for the user (failures, resumed work), when anyone listens."""
        if self.notify is not None:
            self.notify(message)

    def status(self, message: str):
        """A spinner on a terminal while something slow happens without steps."""
        from contextlib import nullcontext

        if not self.progress_bar or not sys.stderr.isatty():
            return nullcontext()
        from rich.console import Console

        return Console(stderr=True).status(message)

    def _progress(self, items: Iterable, total: int) -> Iterator:
        if not self.progress_bar or not sys.stderr.isatty() or total < 2:
            yield from items
            return
        from rich.console import Console
        from rich.progress import track

        yield from track(items, description=self.command, total=total,
                         console=Console(stderr=True))

    def batches(self, images: ImageSource, run: dict, geometry=None) -> Iterator[list]:
        """Stream the images as batches of LoadedImage, full except the last, each batch of
        one computed size (`geometry`, models.geometry: by default the model's for the run).

        Decoding runs in background threads a few batches ahead. Unreadable images are recorded
        and skipped (with fail_fast the run stops); shard and skip_existing narrow the list.
        """
        import warnings
        from functools import partial

        from PIL import Image

        from cnnviz_cli.io.background import prefetch

        # Pillow warns about images over its own limit; load_image refuses them in one line
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
        items = self._selected(collect_inputs(images), run)
        geometry = geometry or self.model.geometry(run["size"], run.get("resize", "stretch"))
        load = partial(load_input, channels=self.model.channels, geometry=geometry,
                       max_pixels=run["max_pixels"])
        batch_size = run["batch_size"]
        self._stream = prefetch(load, items, ahead=2 * batch_size)
        batch: list = []
        for item, future in self._progress(self._stream, len(items)):
            try:
                image = future.result()
            except InputError as error:
                self._failed(item.name, error, run["fail_fast"])
                continue
            if batch and image.resized.shape != batch[0].resized.shape:  # batched by size
                yield from self._hand_out(batch)
                batch = []
            batch.append(image)
            if len(batch) == batch_size:
                yield from self._hand_out(batch)
                batch = []
        if batch:
            yield from self._hand_out(batch)

    def _selected(self, items: list, run: dict) -> list:
        if run["shard"]:
            index, count = run["shard"]
            items = items[index - 1 :: count]
        if run["skip_existing"] and self.outputs is None:
            raise CnnvizError("skip_existing needs an output folder (out=) to resume in.")
        done = self._start(frozenset(item.key for item in items), run["skip_existing"])
        if done:
            items = [item for item in items if item.key not in done]
            self.warn(f"Skipping {len(done)} image(s) an earlier run finished.")
        return items

    def _failed(self, name: str, error: InputError, fail_fast: bool) -> None:
        self.failures.append({"input": name, "error": str(error)})
        if self.outputs is not None:
            self.outputs.fail(name, str(error))
        if fail_fast:
            raise InputError(f"Stopped at the first bad input (--fail-fast): {name}: {error}")
        self.warn(f"Skipped {name}: {error}")

    def _hand_out(self, batch: list) -> Iterator[list]:
        from cnnviz_cli.io.manifests import write_manifest

        if self.outputs is not None:
            self.outputs.begin_batch([_input_record(image) for image in batch])
        yield batch
        if self.outputs is not None:
            self.outputs.end_batch()
            write_manifest(self.outputs, self._pace)

    def keep(self, part, retain: bool = False) -> None:
        """Write a part of the result (its files) into the output folder, else keep it; with
        `retain` (results that do not grow with the inputs) keep it in both cases."""
        if self.outputs is not None:
            self._start()
            part.write(self.outputs)
        if self.summaries is not None:
            for name, series in part.series():
                self.summaries.write(self.command, series.step,
                                     [(name, series.draw(), series.numbers)])
        if self.outputs is None or retain:
            self.parts.append(part)

    def finish(self, metrics: dict | None = None) -> str | None:
        """Wait for the writers; write the manifest and report. Returns the manifest's text."""
        if self.outputs is None:
            self.finished = True
            return None
        self._start()
        text = finish_run(self.outputs, metrics)
        self.finished = True
        return text

    def close(self) -> None:
        """On any exit: stop the threads; after an error or a signal, keep what finished."""
        for number, handler in self._handlers.items():
            signal.signal(number, handler)
        self._handlers = {}
        if self.summaries is not None:
            self.summaries.close()
        if self._stream is not None:
            self._stream.close()
        if self.outputs is None:
            return
        self.outputs.close()
        if self.finished or not self.outputs.opened:
            return
        if not self.outputs.changed:  # stopped before any output: leave no empty folder
            self.outputs.remove_if_unused()
            return
        try:
            save_manifest(self.outputs)
        except WriteError:  # the manifest on disk stays the last complete one
            pass
        finally:
            self.outputs.release()
        if not self.outputs.write_failed:
            self.warn(f"Stopped early; the {len(self.outputs.records)} finished files are "
                      f"listed in {self.outputs.root}/manifest.json.")


def _input_record(image) -> dict:
    """What the manifest records of an input: its names, the size it was computed at and,
    padded or cropped, where its pixels went (models.geometry.Placement)."""
    record = {"input": image.name, "key": image.key, "size": list(image.resized.shape[:2])}
    if image.placement is not None and not image.placement.exact:
        record["placement"] = image.placement.describe()
    return record


def placement(runtime):
    """A context that places TensorFlow's work on the run's device (none chosen: as it is)."""
    if runtime is None:
        from contextlib import nullcontext

        return nullcontext()
    import tensorflow as tf

    return tf.device(runtime.device)


def finish_run(outputs, metrics: dict | None = None) -> str:
    """The end of a run into an open output folder: wait for the writers, write the manifest
    (with `metrics`) and report, unlock the folder. Returns the manifest's text."""
    outputs.end_batch()
    outputs.flush()
    outputs.metrics.update(metrics or {})
    text = save_manifest(outputs)
    outputs.release()
    return text


def save_manifest(outputs) -> str:
    """Write manifest.json and index.html of an output folder; return the manifest's text."""
    import json

    from cnnviz_cli.io.manifests import merge_manifests, write_manifest
    from cnnviz_cli.io.outputs import REPORT
    from cnnviz_cli.render.report import render_report

    text = write_manifest(outputs)
    page = render_report(merge_manifests([(json.loads(text), ".")]))
    outputs.write_now(REPORT, page.encode("utf-8"))
    return text


def _check_out_folder(out: Path, specs: Iterable[str]) -> None:
    """Refuse an output folder that is an input folder or inside one: outputs would become
    inputs of later runs."""
    target = out.resolve()
    for folder in input_folders(specs):
        resolved = folder.resolve()
        if target == resolved or resolved in target.parents:
            place = "is" if target == resolved else "is inside"
            raise CnnvizError(
                f"--out {out} {place} the input folder {folder}, so later runs would read the "
                "outputs as images; choose an --out outside it."
            )
