"""Shell completion (bash, zsh, fish) through Click's: model names for -m, the feature-map
layers of the model given with -m for -l, method names for --method (Click completes
commands, options and choices such as --metric and --task itself), and the profiles of the
settings file for --profile.

Enable it once per shell (the line goes into ~/.bashrc, ~/.zshrc or fish's config):

    eval "$(_CNNVIZ_COMPLETE=bash_source cnnviz)"
    eval "$(_CNNVIZ_COMPLETE=zsh_source cnnviz)"
    _CNNVIZ_COMPLETE=fish_source cnnviz | source

Lists that need TensorFlow (model names, a model's layers) are cached as JSON in
$XDG_CACHE_HOME/cnnviz/ (default ~/.cache/cnnviz/), keyed by the model file's path, size and
modification time (or the name and the Keras version), so only the first TAB builds a model.
"""

import hashlib
import json
import os
from collections.abc import Callable
from importlib import metadata, resources
from pathlib import Path

import click
from click.shell_completion import CompletionItem

from cnnviz_cli.version import __version__


def cache_folder() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "cnnviz"


def cached(kind: str, key: str, compute: Callable[[], list[str]]) -> list[str]:
    """`compute()`, kept in the cache folder under `kind` and a digest of `key`."""
    path = cache_folder() / kind / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    found = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(found))
    except OSError:  # a read-only home: complete without a cache
        pass
    return found


def model_key(model: str) -> str:
    """What the layers of `model` depend on: a file's path, size and modification time, or a
    name and the Keras version."""
    path = Path(str(resources.files("cnnviz_cli.demo") / "shapes_cnn.keras")) \
        if model == "demo" else Path(model)
    if path.exists():
        status = path.stat()
        return f"{path.resolve()}:{status.st_size}:{status.st_mtime_ns}"
    return f"{model.lower()}:{metadata.version('keras')}"


def _model_names() -> list[str]:
    from cnnviz_cli.models.registry import model_names

    return model_names()


def _feature_maps(model: str) -> list[str]:
    from cnnviz_cli.models.layers import feature_map_layers
    from cnnviz_cli.models.resolve import ModelRequest, resolve_model

    resolved = resolve_model(ModelRequest(model=model, weights=None if Path(model).exists()
                                          or model == "demo" else "none"))
    if "format" in resolved.details:  # an exported model has no layers
        return []
    return [info.path for info in feature_map_layers(resolved.model, resolved.image_size())]


def _matching(names: list[str], incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(name) for name in names if name.startswith(incomplete)]


def complete_model(_ctx: click.Context, _param, incomplete: str) -> list[CompletionItem]:
    """Registry names, and files (the shell's own file completion)."""
    names = cached("models", __version__, _model_names)
    return [CompletionItem(incomplete, type="file"), *_matching(names, incomplete)]


def complete_layer(ctx: click.Context, _param, incomplete: str) -> list[CompletionItem]:
    """The feature-map layers of the model given with -m (the demo model without one)."""
    model = str(ctx.params.get("model") or "demo")
    try:
        names = cached("layers", model_key(model), lambda: _feature_maps(model))
    except Exception:  # an unreadable or unknown model: nothing to offer, never an error
        return []
    return _matching(names, incomplete)


def complete_method(_ctx: click.Context, _param, incomplete: str) -> list[CompletionItem]:
    """CAM method names; after a comma, the next name of the comma list."""
    from cnnviz_cli.techniques.cam import methods

    done, _, last = incomplete.rpartition(",")
    prefix = done + "," if done else ""
    return [CompletionItem(prefix + name) for name in (*methods(), "all")
            if name.startswith(last)]


def complete_profile(ctx: click.Context, _param, incomplete: str) -> list[CompletionItem]:
    """The profiles of the settings file (--config, else the one found from here)."""
    from cnnviz_cli.cli.config import read_config
    from cnnviz_cli.errors import CnnvizError

    try:
        found = read_config(ctx.params.get("config_file"))
    except CnnvizError:  # an unreadable file: nothing to offer, never an error
        return []
    return _matching(list(found[1].get("profiles", {})) if found else [], incomplete)


COMPLETERS = {"--model": complete_model, "--layer": complete_layer, "--method": complete_method}
"""Long flag -> its completer, for every command that has the option (and no choices of its
own, such as reconstruct's --method)."""


def attach(command: click.Command, ctx: click.Context) -> None:
    """Give a command's options their completers (Click's `shell_complete=` argument)."""
    for param in command.get_params(ctx):
        completers = [COMPLETERS[opt] for opt in getattr(param, "opts", []) if opt in COMPLETERS]
        if completers and param._custom_shell_complete is None \
                and not isinstance(param.type, click.Choice):
            param._custom_shell_complete = completers[0]
