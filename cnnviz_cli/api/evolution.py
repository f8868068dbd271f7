"""A technique followed over model states (training checkpoints, epochs): one strip with a row
per state and one GIF with a frame per state for every picture the technique follows."""

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache, partial
from pathlib import Path

import numpy as np

from cnnviz_cli.api.results import File, Result, collect, open_session, part, slug
from cnnviz_cli.errors import CnnvizError

NOT_PER_STATE = ("out", "progress", "checkpoints", "images", "model", "preprocess", "labels",
                 "run", "unsafe_deserialization", "tensorboard")


@dataclass
class Track:
    """One followed picture over the states: a picture, caption and numbers per state."""

    name: str
    states: list[str] = field(default_factory=list)
    pictures: list[np.ndarray] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    numbers: list[dict] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)

    def labels(self) -> list[str]:
        return [" · ".join(filter(None, pair))
                for pair in zip(self.states, self.captions, strict=True)]


class Evolution:
    """Collects the followed pictures (`Result.series()`) of one technique, state by state."""

    def __init__(self, command: str):
        self.command = command
        self.tracks: dict[str, Track] = {}

    def add(self, state: str, result: Result) -> list[tuple[str, np.ndarray, dict]]:
        """Draw the result's followed pictures as the state `state`; returns them as
        (name, picture, numbers)."""
        drawn = []
        for name, series in result.series():
            picture = series.draw()
            track = self.tracks.setdefault(name, Track(name))
            track.states.append(state)
            track.pictures.append(picture)
            track.captions.append(series.caption)
            track.numbers.append(dict(series.numbers))
            track.records.append(dict(series.record))
            drawn.append((name, picture, series.numbers))
        return drawn


@dataclass(repr=False)
class EvolutionResult(Result):
    """Per followed picture (`items`, Tracks): a strip with one row per model state and a GIF."""

    word: str = "checkpoints"  # what the states are, in file names: checkpoints or epochs

    def _files(self, track: Track):
        from cnnviz_cli.render.grid import labelled_rows

        folder, _, name = track.name.rpartition("/")
        stem = f"{folder}/" * bool(folder) + f"{self.command}-{slug(name)}-{self.word}"
        record = {"series": track.name, "states": track.states, "captions": track.captions,
                  "numbers": track.numbers, "records": track.records}
        yield File(f"{stem}.png", {**record, "kind": "strip"},
                   partial(labelled_rows, track.pictures, track.labels(), track.name))
        yield File(f"{stem}.gif", {**record, "kind": "animation"}, partial(_frames, track),
                   kind="gif", frame_ms=700)

    def _picture(self, track: Track) -> np.ndarray:
        return next(self._files(track)).render()


@cache
def evolution_type(command: str) -> type[EvolutionResult]:
    """The EvolutionResult of one technique (its manifests name that command)."""
    return type(f"{command.title()}Evolution", (EvolutionResult,), {"command": command})


def _frames(track: Track) -> list[np.ndarray]:
    from cnnviz_cli.render.grid import labelled_rows

    frames = [labelled_rows([picture], [label], track.name)
              for picture, label in zip(track.pictures, track.labels(), strict=True)]
    height = max(frame.shape[0] for frame in frames)
    width = max(frame.shape[1] for frame in frames)
    return [np.pad(frame, ((0, height - frame.shape[0]), (0, width - frame.shape[1]), (0, 0)),
                   constant_values=255) for frame in frames]


def per_state_arguments(arguments: dict) -> dict:
    """A technique's keyword arguments for one model state: its own options and run options."""
    own = {name: value for name, value in arguments.items() if name not in NOT_PER_STATE}
    return {**own, **(arguments.get("run") or {})}


def over_checkpoints(function: Callable, resolved, arguments: dict, checkpoints,
                     out: str | Path | None, progress: bool,
                     run_defaults: dict | None = None) -> EvolutionResult:
    """Run the technique `function` once per checkpoint on a copy of the model holding that
    checkpoint's weights (compiled once for all); one strip and GIF per followed picture."""
    from cnnviz_cli.models.checkpoints import trainable_copy

    command = function.__name__
    refuse_with_checkpoints(arguments.get("run") or {}, ("skip_existing",))
    copy = trainable_copy(resolved.model)
    state = replace(resolved, model=copy, compiled={})
    files = [Path(file) for file in checkpoints]
    images = arguments.get("images")
    session, _ = open_session(command, function,
                              {**arguments, "checkpoints": [str(f) for f in files]},
                              resolved, out, progress, run_defaults=run_defaults)
    return _follow(session, function, state, copy, files, images,
                   per_state_arguments(arguments))


def over_checkpoints_of(function: Callable, table, resolved, settings: dict, images,
                        progress: bool) -> EvolutionResult:
    """`over_checkpoints` for a technique whose options are a Table (see api.tables)."""
    from cnnviz_cli.api.results import start_session
    from cnnviz_cli.models.checkpoints import trainable_copy

    refuse_with_checkpoints(settings, ("skip_existing",))
    copy = trainable_copy(resolved.model)
    state = replace(resolved, model=copy, compiled={})
    per_state = {name: value for name, value in settings.items()
                 if name not in (*NOT_PER_STATE, "weights", "custom_objects", "signature",
                                 "device", "gpu_memory", "precision", "force")}
    session, _ = start_session(table, resolved, settings, progress)
    return _follow(session, function, state, copy, settings["checkpoints"], images, per_state)


def _follow(session, function: Callable, state, copy, checkpoints, images,
            per_state: dict) -> EvolutionResult:
    """Run `function` on `state` once per checkpoint loaded into `copy`; strips and GIFs."""
    from cnnviz_cli.models.checkpoints import checkpoint_weights

    command = session.command
    inputs = () if images is None else (images,)
    evolution = Evolution(command)
    result_type = evolution_type(command)
    summaries, session.summaries = session.summaries, None  # per checkpoint, not the strips
    with session:
        try:
            for index, file in enumerate(checkpoint_weights(copy, [Path(c) for c in checkpoints])):
                result = function(state, *inputs, **per_state)
                if index == 0:
                    for failure in result.failures:
                        session.failures.append(failure)
                        if session.outputs is not None:
                            session.outputs.fail(failure["input"], failure["error"])
                drawn = evolution.add(file.name, result)
                if summaries is not None:
                    summaries.write(command, index, drawn)
        finally:
            if summaries is not None:
                summaries.close()
        session.keep(part(session, result_type, list(evolution.tracks.values())), retain=True)
        return collect(session, result_type)


def refuse_with_checkpoints(arguments: dict, names: tuple[str, ...]) -> None:
    """Options whose results a checkpoint series does not keep cannot go with checkpoints."""
    given = [name for name in names if arguments.get(name) not in (None, False, (), [])]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise CnnvizError(f"{flags} cannot go with --checkpoint, which draws one row per "
                          "checkpoint; run them on one model at a time.")
