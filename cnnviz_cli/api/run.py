"""The one run template of every technique: settle the options, load the model, follow
checkpoints, open the session, stream the batches, keep the parts and collect the result.

A technique module supplies a `Technique`: its option table, its result type and `prepare`,
which turns the resolved model and settings into a `Plan` (what to do per batch and at the end).
"""

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from cnnviz_cli.api.results import Result, collect, image_words, part
from cnnviz_cli.api.session import Session
from cnnviz_cli.api.tables import MODEL_OPTIONS
from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.options import Table

IN_MEMORY = "<array in memory>"
MODEL_NAMES = tuple(option.name for option in MODEL_OPTIONS if option.name != "model")
NOT_PER_STATE = (*MODEL_NAMES, "model", "checkpoints", "out", "tensorboard", "force")
"""Settings a checkpoint series applies once, not to the run on each checkpoint."""
LIMITED = ("size", "max_pixels", "batch_size")  # what api.limits checks before any work


@dataclass
class Plan:
    """What a technique does in one run, once its model and layers resolved.

    `each(batch)` gives the items of a batch of images (None: the run reads no images);
    `end()` the items after the last batch (held until then, or computed once), kept also with
    an output folder when `retain` (a summary that does not grow with the inputs); `fields`
    the result fields every part carries; `finish()` the fields of the whole result;
    `geometry` the sizes the images are computed at (models.geometry; None: the run's
    --size and --resize).
    """

    each: Callable[[list], list] | None = None
    end: Callable[[], list] = list
    retain: bool = False
    fields: dict = field(default_factory=dict)
    finish: Callable[[], dict] = dict
    result: type[Result] | None = None  # another result type than the technique's
    geometry: object | None = None


@dataclass(frozen=True)
class Technique:
    """What a technique module supplies to the template.

    `prepare(resolved, settings, run, session)` returns the Plan; `images` is the option that
    names the images streamed; `not_with_checkpoints` the options a checkpoint series cannot
    keep (`follows_checkpoints=False`: the technique draws its checkpoints itself).
    """

    table: Callable[[], Table]
    result: type[Result]
    prepare: Callable[..., Plan]
    images: str = "images"
    not_with_checkpoints: tuple[str, ...] = ()
    follows_checkpoints: bool = True


def run(technique: Technique, model, images, given: dict, progress: bool = False) -> Result:
    """Run a technique on `model` (and `images`) with the options `given`.

    The settings `prepare` sees hold the images, and any option given as an array (concept
    vectors, a direction), as they were given; the manifest records their names (or
    `<array in memory>`).
    """
    table = technique.table()
    arrays = {name: value for name, value in given.items() if isinstance(value, np.ndarray)}
    given = {**given, **dict.fromkeys(arrays, IN_MEMORY)}
    resolved, settings = begin(table, model, images, given, technique.images)
    if technique.follows_checkpoints and settings.get("checkpoints"):
        return _over_checkpoints(technique, resolved, settings, arrays, images, progress)
    session, options = start_session(table, resolved, settings, progress)
    with session:
        given_values = {**arrays, **({} if images is None else {technique.images: images})}
        plan = technique.prepare(resolved, {**settings, **given_values}, options, session)
        result = plan.result or technique.result
        if plan.each is not None:
            for batch in session.batches(images, options, plan.geometry):
                items = plan.each(batch)
                if items:
                    session.keep(part(session, result, items, **plan.fields))
        items = plan.end()
        if items:
            session.keep(part(session, result, items, **plan.fields), retain=plan.retain)
        return collect(session, result, **plan.fields, **plan.finish())


def begin(table: Table, model, images, given: dict, name: str = "images") -> tuple:
    """Settle a run's settings from the given options (refusing unknown ones and those that
    cannot take effect), then load the model: (ResolvedModel, settings).

    The settings hold the images (option `name`) as the command line names them and the
    model options as the model was loaded, so `table.command_line(settings)` replays the run.
    """
    from cnnviz_cli.api.models import load_model

    given = {key: value for key, value in given.items() if key != name}
    if images is not None and name in table:
        given[name] = image_words(images)
    settings = table.settle(given)
    table.refuse_ignored(settings, table.given(given))
    resolved = load_model(model, **{key: settings[key] for key in MODEL_NAMES
                                     if key in settings})
    loaded = {key: value for key, value in resolved.loaded_with.items() if key in table}
    settings.update(table.settle({**given, **loaded}))
    return resolved, settings


def start_session(table: Table, resolved, settings: dict,
                  progress: bool = False) -> tuple[Session, dict]:
    """A Session for a run of `table.command` with settled `settings`, and its run options
    (those of the table, the others at their defaults).

    The manifest's options are the settings; the recorded command line comes from the table.
    """
    from cnnviz_cli.api.formats import check_command
    from cnnviz_cli.api.limits import check_input_size
    from cnnviz_cli.api.tables import RUN

    check_command(resolved, table.command, settings)
    check_input_size(resolved, {name: settings[name] for name in LIMITED if name in settings})
    options = {option.name: settings.get(option.name, option.default) for option in RUN}
    options["force"] = settings["force"]
    recorded = {name: _plain(value) for name, value in settings.items()}
    recorded["model"] = resolved.source
    out, tensorboard = settings.get("out"), settings.get("tensorboard")
    session = Session(table.command, resolved, recorded, table.command_line(settings),
                      None if out is None else Path(out), progress,
                      tensorboard=None if tensorboard is None else Path(tensorboard))
    return session, options


def _plain(value):
    """An option value as the manifest stores it (tuples as lists, paths as text)."""
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    return str(value) if isinstance(value, Path) else value


def _over_checkpoints(technique: Technique, resolved, settings: dict, arrays: dict, images,
                      progress: bool):
    """Run the technique once per checkpoint on a copy of the model holding that checkpoint's
    weights (compiled once for all); one strip and GIF per followed picture."""
    from cnnviz_cli.api.evolution import follow
    from cnnviz_cli.models.checkpoints import trainable_copy

    table = technique.table()
    refuse_with_checkpoints(table, settings, ("skip_existing", *technique.not_with_checkpoints))
    copy = trainable_copy(resolved.model)
    state = replace(resolved, model=copy, compiled={})
    per_state = {name: value for name, value in settings.items()
                 if name not in (*NOT_PER_STATE, technique.images)} | arrays
    session, _ = start_session(table, resolved, settings, progress)
    return follow(session, lambda: run(technique, state, images, per_state), copy,
                  settings["checkpoints"])


def refuse_with_checkpoints(table: Table, settings: dict, names: tuple[str, ...]) -> None:
    """Options whose results a checkpoint series does not keep cannot go with checkpoints."""
    given = [table.options[name].long for name in names
             if name in table and settings.get(name) not in (None, False, (), [])]
    if given:
        raise CnnvizError(f"{', '.join(given)} cannot go with --checkpoint, which draws one row "
                          "per checkpoint; run them on one model at a time.")
