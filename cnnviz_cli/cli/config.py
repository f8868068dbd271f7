"""Settings below the command line: environment variables, a profile, a config file.

The file is `--config FILE`, else the nearest `cnnviz.toml`, else the nearest `pyproject.toml`
with a `[tool.cnnviz]` table (searched from the working folder up). Its keys are the options'
long names (`method`, `fail-under`; `_` reads as `-`): at the top level for every command that
has the option, in a table per command (`[cam]`), and the same again in named profiles
(`[profiles.ci]`, `[profiles.ci.cam]`) chosen with `--profile NAME` or CNNVIZ_PROFILE. An
environment variable CNNVIZ_<COMMAND>_<OPTION> (`CNNVIZ_CAM_METHOD=layercam`; a repeatable
option takes several words) sets one option of one command.

Precedence: command line > environment > profile > file > built-in default. The layers become
the command's Click `default_map`; `sources(ctx)` says where each setting came from.
"""

import functools
import os
import shlex
import tomllib
from importlib import import_module
from pathlib import Path

import click
from click.core import ParameterSource

from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.options import closest

CONFIG_FILE = "cnnviz.toml"
PROFILE_VARIABLE = "CNNVIZ_PROFILE"
CONFIG_VARIABLE = "CNNVIZ_CONFIG"
PREFIX = "CNNVIZ_"
LABELS = "cnnviz.settings_labels"  # ctx.meta key: option name -> the layer that set it


def _read(path: Path) -> dict:
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except OSError as error:
        raise CnnvizError(f"Cannot read the config file {_shown(path)}: {error.strerror}.") \
            from None
    except tomllib.TOMLDecodeError as error:
        raise CnnvizError(f"The config file {_shown(path)} is not valid TOML: {error}.") \
            from None


def find_config(start: Path) -> tuple[Path, dict] | None:
    """The nearest cnnviz.toml, or pyproject.toml with [tool.cnnviz], from `start` up."""
    for folder in (start, *start.parents):
        if (own := folder / CONFIG_FILE).is_file():
            return own, _read(own)
        if (project := folder / "pyproject.toml").is_file():
            settings = _read(project).get("tool", {}).get("cnnviz")
            if settings is not None:
                return project, settings
    return None


def read_config(config: Path | None) -> tuple[Path, dict] | None:
    """The settings file `config` (--config; of a pyproject.toml, its [tool.cnnviz]), else
    the one found from the working folder."""
    if config is None:
        return find_config(Path.cwd())
    settings = _read(config)
    if config.name == "pyproject.toml":
        settings = settings.get("tool", {}).get("cnnviz", {})
    return config, settings


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _keys(command: click.Command, ctx: click.Context) -> dict[str, click.Option]:
    """A command's options by key: the long flag without dashes (`--fail-under`: fail-under)."""
    keys = {}
    for param in command.get_params(ctx):
        longs = [opt for opt in getattr(param, "opts", []) if opt.startswith("--")]
        if isinstance(param, click.Option) and longs and param.name != "help":
            keys[longs[0][2:]] = param
    return keys


def _table_option(command: click.Command, name: str):
    """The options.Option behind a parameter of a table command (CnnvizCommand's `table`: a
    function returning the Table, or the name of the cnnviz_cli.api module that has one)."""
    table = getattr(command, "table", None)
    if isinstance(table, str):
        table = import_module(f"cnnviz_cli.api.{table}").table
    return table().options.get(name) if table is not None else None


def _value(param: click.Option, value, ctx: click.Context, where: str):
    """`value` as Click takes it from a default_map, checked as the command line would be."""
    if not param.multiple and isinstance(value, list):
        raise CnnvizError(f"{where} takes one value, but got a list {value!r}.")
    given, value = value, [value] if param.multiple and not isinstance(value, list) else value
    try:
        cast = param.type_cast_value(ctx, value)
        option = _table_option(ctx.command, param.name)
        if option is not None and not option.argument:
            settled = option.settle(list(cast) if option.multiple else cast) \
                if option.settle is not None else cast
            option.check(settled)
    except click.BadParameter as error:
        raise CnnvizError(f"{where} = {given!r} is not valid: {error.message}") from None
    except CnnvizError as error:
        raise CnnvizError(f"{where} = {given!r} is not valid: {error}") from None
    return value


class Layers:
    """The settings of one command from the file, the profile and the environment: every
    key's name is checked against the commands it is for, its value for the running one."""

    def __init__(self, group: click.Group, ctx: click.Context, command: str):
        self.group, self.ctx, self.command = group, ctx, command
        self.values: dict[str, object] = {}
        self.labels: dict[str, str] = {}

    @functools.cached_property
    def keys(self) -> dict[str, dict[str, click.Option]]:
        """Every command's options by key (read only when there is a settings file)."""
        return {name: _keys(self.group.get_command(self.ctx, name), self._context(name))
                for name in self.group.list_commands(self.ctx)}

    def _context(self, name: str) -> click.Context:
        return click.Context(self.group.get_command(self.ctx, name), parent=self.ctx,
                             info_name=name)

    def add_table(self, table: dict, label: str, where: str) -> None:
        """A top-level or profile table: shared keys (for every command that has them), then
        a table per command."""
        for name, section in table.items():
            if isinstance(section, dict) and name not in self.keys:
                raise CnnvizError(f"{where} has a table [{name}], which is no cnnviz command"
                                  f"{closest(name, self.keys)}; tables are commands "
                                  f"({', '.join(self.keys)}) and profiles.")
        shared = {key: value for key, value in table.items() if not isinstance(value, dict)}
        self._add(shared, list(self.keys), label, where)
        for name in self.keys:
            self._add(table.get(name, {}), [name], label, f"{where} [{name}]")

    def _add(self, section: dict, commands: list[str], label: str, where: str) -> None:
        known = {key for name in commands for key in self.keys[name]}
        for key, value in section.items():
            if key.replace("_", "-") not in known:
                whose = f"cnnviz {commands[0]}" if len(commands) == 1 else "any command"
                raise CnnvizError(f"{where} has an unknown key {key!r}"
                                  f"{closest(key.replace('_', '-'), known)}; keys are the long "
                                  f"options of {whose}.")
            param = self.keys[self.command].get(key.replace("_", "-")) \
                if self.command in commands else None
            if param is not None:
                self.values[param.name] = _value(param, value, self._context(self.command),
                                                 f"{where} key {key}")
                self.labels[param.name] = label

    def add_environment(self, environment: dict[str, str]) -> None:
        """CNNVIZ_<COMMAND>_<OPTION> variables of the invoked command."""
        prefix = f"{PREFIX}{self.command.upper()}_"
        own = _keys(self.group.get_command(self.ctx, self.command), self._context(self.command))
        names = {prefix + key.upper().replace("-", "_"): param for key, param in own.items()}
        for variable, text in environment.items():
            if not variable.startswith(prefix):
                continue
            param = names.get(variable)
            if param is None:
                raise CnnvizError(f"The environment variable {variable} names no option of "
                                  f"cnnviz {self.command}{closest(variable, names)}.")
            value = shlex.split(text) if param.multiple else text
            self.values[param.name] = _value(param, value, self._context(self.command),
                                             f"The environment variable {variable}")
            self.labels[param.name] = "environment"


def settle(group: click.Group, ctx: click.Context, config: Path | None,
           profile: str | None) -> None:
    """Give the invoked command the settings of the file, the profile and the environment
    (its `default_map`), and remember where each came from (`sources`)."""
    command = ctx.invoked_subcommand
    if command is None:
        return
    found = read_config(config)
    layers = Layers(group, ctx, command)
    if found is not None:
        path, table = found
        table = dict(table)
        profiles = table.pop("profiles", {})
        where = _shown(path)
        layers.add_table(table, f"file {where}", where)
        if profile is not None:
            if profile not in profiles:
                listed = (f"its profiles are {', '.join(profiles)}" if profiles
                          else "it has no [profiles.NAME] tables")
                raise CnnvizError(f"{where} has no profile {profile!r}"
                                  f"{closest(profile, profiles)}; {listed}.")
            layers.add_table(profiles[profile], f"profile {profile}",
                             f"{where} [profiles.{profile}]")
    elif profile is not None:
        raise CnnvizError(f"--profile {profile} needs a config file, and there is no "
                          f"{CONFIG_FILE} or pyproject.toml with [tool.cnnviz] here or above; "
                          "create one or give --config FILE.")
    layers.add_environment(dict(os.environ))
    if layers.values:
        ctx.default_map = {command: layers.values}
    ctx.meta[LABELS] = layers.labels


def sources(ctx: click.Context) -> dict[str, str]:
    """Where each setting of the running command came from: command line, environment,
    profile NAME, file PATH or default."""
    labels = ctx.meta.get(LABELS, {})
    found = {}
    for param in ctx.command.get_params(ctx):
        if not param.expose_value or param.name not in ctx.params:
            continue
        source = ctx.get_parameter_source(param.name)
        found[param.name] = (labels.get(param.name, "file") if source == ParameterSource.DEFAULT_MAP
                             else "command line" if source == ParameterSource.COMMANDLINE
                             else "environment" if source == ParameterSource.ENVIRONMENT
                             else "default")
    return found


def annotate(running: click.Context | None, message: str) -> str:
    """An error sentence about `--OPTION ...` whose value came from a settings file, a profile
    or the environment, with where it came from (it is not on the command line)."""
    flag = message.split(" ", 1)[0].rstrip(".,:;")
    if running is None or not flag.startswith("--"):
        return message
    names = {opt: param.name for param in running.command.get_params(running)
             for opt in getattr(param, "opts", [])}
    label = sources(running).get(names.get(flag, ""), "default")
    if label in ("command line", "default"):
        return message
    return f"{message.rstrip('.')} ({flag} came from the {label}, not the command line)."


def current_sources() -> dict[str, str] | None:
    """`sources` of the command running now (None outside a command)."""
    ctx = click.get_current_context(silent=True)
    return None if ctx is None or ctx.parent is None else sources(ctx)
