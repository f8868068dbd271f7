"""Keras callbacks for training-time visualisation, built on the Python API.

    callback = cnnviz_cli.VisualizeCallback(["sample_images/star.png"], out="viz/",
                                            log_dir="logs/cnnviz")
    model.fit(x, y, epochs=10, callbacks=[callback])
"""

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import keras

from cnnviz_cli.api.inputs import ImageSource
from cnnviz_cli.errors import CnnvizError

TECHNIQUES = ("cam", "activations", "filters", "maximize")
WITH_IMAGES = ("cam", "activations")
LOADING = ("preprocess", "labels")  # options of load_model, given once for all techniques
NOT_OPTIONS = ("model", "images", "out", "checkpoints", "tensorboard", "force")
logger = logging.getLogger("cnnviz_cli.callbacks")


def _parameters(technique: str) -> set[str]:
    """The options of a technique the callback can pass (its table's, less the run's own)."""
    from importlib import import_module

    from cnnviz_cli.api.run import MODEL_NAMES

    options = import_module(f"cnnviz_cli.api.{technique}").table().options
    return set(options) - {*NOT_OPTIONS, *MODEL_NAMES}


class VisualizeCallback(keras.callbacks.Callback):
    """Run cnnviz techniques on fixed images with the model being trained, every few epochs.

    Each technique runs once before training (step 0) and after every `every` epochs (step =
    epochs trained), on the live model: its compiled functions are traced once and reused,
    and nothing changes the training. With `out`, each run is written to
    `out/epoch-NNN/<technique>/` (a merged `out/epoch-NNN/manifest.json`), and at the end of
    training `out/evolution/<technique>/` holds a strip (one row per step) and a GIF (one frame
    per step) of every picture followed, with `out/index.html` over it all. With `log_dir`
    the pictures are TensorBoard images tagged `cnnviz/<technique>/<name>` (e.g.
    `cnnviz/cam/star/gradcam`, `cnnviz/filters/conv1`) and their numbers scalars.

    Args:
        images: the images to follow (paths, folders, PIL images or uint8 arrays).
        techniques: any of cam, activations, filters, maximize.
        every: visualise after every `every` epochs.
        out: the folder to write into.
        log_dir: a TensorBoard log folder.
        **options: options of the techniques (`methods`, `layer`, `layers`, `classes`,
            `filters`, `steps`, ...), each given to every chosen technique that takes it;
            `preprocess` and `labels` as for `load_model`.

    After training, `results` holds the evolution result of each technique and `seconds`
    the cost of each visualisation step, also in the epoch logs as `cnnviz_seconds` (Keras'
    progress bar and History), in the manifests and in TensorBoard (`cnnviz/seconds`).
    """

    def __init__(self, images: ImageSource, techniques: Sequence[str] = TECHNIQUES[:3],
                 every: int = 1, out: str | Path | None = None,
                 log_dir: str | Path | None = None, **options):
        super().__init__()
        from cnnviz_cli import api

        unknown = [name for name in techniques if name not in TECHNIQUES]
        if unknown or not techniques:
            raise CnnvizError(f"Unknown technique(s) {', '.join(unknown) or '(none given)'}; "
                              f"choose from {', '.join(TECHNIQUES)}.")
        if not isinstance(every, int) or every < 1:
            raise CnnvizError(f"every must be a whole number of epochs >= 1, not {every!r}.")
        self.functions = {name: getattr(api, name) for name in dict.fromkeys(techniques)}
        self.arguments: dict[str, dict] = {name: {} for name in self.functions}
        for option, value in options.items():
            if option in LOADING:
                continue
            takers = [name for name in self.functions
                      if option in _parameters(name)]
            if not takers:
                raise CnnvizError(f"None of the techniques {', '.join(self.functions)} takes "
                                  f"the option {option!r}.")
            for name in takers:
                self.arguments[name][option] = value
        self.images, self.every = images, every
        self.out = None if out is None else Path(out)
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.loading = {name: options[name] for name in LOADING if name in options}
        self.seconds: list[float] = []
        self.results: dict = {}

    def on_train_begin(self, logs=None) -> None:
        from cnnviz_cli.api import load_model
        from cnnviz_cli.api.evolution import Evolution
        from cnnviz_cli.io.tensorboard import Summaries

        self.resolved = load_model(self.model, **self.loading)
        if self.out is not None:
            _check_writable(self.out)
        self.summaries = None if self.log_dir is None else Summaries(self.log_dir)
        self.evolutions = {name: Evolution(name) for name in self.functions}
        self.parts: list[tuple[dict, str]] = []
        self.seconds, self.results = [], {}
        self._visualise(0)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        if (epoch + 1) % self.every == 0:
            self._visualise(epoch + 1)
            if logs is not None:  # shown by Keras' progress bar, kept in its History
                logs["cnnviz_seconds"] = self.seconds[-1]

    def _visualise(self, step: int) -> None:
        start = time.perf_counter()
        folder = None if self.out is None else self.out / f"epoch-{step:03d}"
        parts = []
        for name, function in self.functions.items():
            inputs = (self.images,) if name in WITH_IMAGES else ()
            result = function(self.resolved, *inputs, **self.arguments[name])
            drawn = self.evolutions[name].add(f"epoch {step}", result)
            if self.summaries is not None:
                self.summaries.write(name, step, drawn)
            if folder is not None:
                result.save(folder / name)
                parts.append((result.manifest, name))
        seconds = time.perf_counter() - start
        self.seconds.append(seconds)
        logger.info("cnnviz: step %d visualised in %.2f s", step, seconds)
        if self.summaries is not None:
            self.summaries.scalar("seconds", seconds, step)
        if folder is not None:
            _write_merged(folder, parts, {"epoch": step, "seconds": seconds})
            self.parts += [(manifest, f"{folder.name}/{name}") for manifest, name in parts]

    def on_train_end(self, logs=None) -> None:
        from cnnviz_cli.api.evolution import evolution_type

        written = []
        for name, evolution in self.evolutions.items():
            result = evolution_type(name)(
                items=list(evolution.tracks.values()), model=self.resolved.describe(),
                options={"techniques": list(self.functions), "every": self.every,
                         **self.arguments[name]},
                command_line=f"VisualizeCallback({name})", word="epochs")
            self.results[name] = result
            if self.out is not None:
                result.save(self.out / "evolution" / name)
                written.append((result.manifest, f"evolution/{name}"))
        if self.out is not None:
            _write_merged(self.out, written + self.parts, {"seconds": self.seconds})
        if self.summaries is not None:
            self.summaries.close()


def _check_writable(folder: Path) -> None:
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise CnnvizError(f"Cannot write into {folder} ({error.strerror or error}); give a "
                          "writable out folder.") from None


def _write_merged(folder: Path, parts: list[tuple[dict, str]], numbers: dict) -> None:
    """One manifest.json and index.html over the runs written under `folder`."""
    from cnnviz_cli.io.manifests import merge_manifests
    from cnnviz_cli.io.outputs import MANIFEST, REPORT, to_json, write_atomic
    from cnnviz_cli.render.report import render_report

    merged = merge_manifests(parts)
    merged["callback"] = numbers
    write_atomic(folder / MANIFEST, to_json(merged).encode("utf-8"))
    write_atomic(folder / REPORT, render_report(merged).encode("utf-8"))
