"""Options declared once. A command's options are a `Table` of `Option`s: the command line's
flags, help sections and "only with" rules, the Python API's keywords and checks, the
manifest's options and the recorded command line are all derived from it.

Imports neither Click nor TensorFlow: techniques declare their options here at import time.
"""

import difflib
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnviz_cli.errors import CnnvizError

MISSING = object()


@dataclass(frozen=True)
class Option:
    """One option: its API keyword (`name`), flag, type, default, help and rules.

    `kind` is int, float, str, bool (a flag), Path, or a tuple of choices. `settle` turns a
    given value (as the command line or the API gives it) into the canonical value the
    technique uses and the recorded command line writes back (`text` renders one value).
    `applies(settings)` says whether the option can take effect with the other settings
    (`when` completes "--OPTION applies only ...").
    """

    name: str
    default: Any = None
    help: str = ""
    kind: Any = str
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    multiple: bool = False
    flag: str = ""
    short: str = ""
    metavar: str = ""
    group: str = "Run"
    settle: Callable[[Any], Any] | None = None
    text: Callable[[Any], str] = str
    recorded: bool = True
    applies: Callable[[dict], bool] | None = None
    when: str = ""
    show_default: bool = True
    argument: bool = False  # positional (the images)

    @property
    def long(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def words(self, value) -> list[str]:
        """The command-line words that give `value` (nothing for a flag that is off)."""
        if self.kind is bool:
            return [self.long] if value else []
        values = value if self.multiple else [value]
        if self.argument:
            return [self.text(item) for item in values]
        return [word for item in values for word in (self.long, self.text(item))]

    def check(self, value) -> None:
        """One error sentence when `value` is outside the option's choices or range."""
        if self.kind is bool and not isinstance(value, bool):
            raise CnnvizError(f"{self.long} is a flag: give True or False, not {value!r}.")
        for item in (value if self.multiple and value is not None else [value]):
            if item is None or self.kind is bool:
                continue
            if isinstance(self.kind, tuple) and str(item).lower() not in self.kind:
                raise CnnvizError(f"{self.long} {item} is not one of {', '.join(self.kind)}.")
            if self.kind in (int, float) and not self._in_range(item):
                raise CnnvizError(f"{self.long} {item} is out of range: {self.range_text()}.")

    def _in_range(self, value) -> bool:
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            return False
        return self.high is None or not (value > self.high or (self.open_high
                                                               and value == self.high))

    def range_text(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.open_low else '>='} {self.low}")
        if self.high is not None:
            parts.append(f"{'<' if self.open_high else '<='} {self.high}")
        return "it must be " + " and ".join(parts)


def closest(name: str, names: Iterable[str]) -> str:
    """` (did you mean X?)` for the closest of `names`, or nothing."""
    found = difflib.get_close_matches(name, list(names), n=1)
    return f" (did you mean {found[0]!r}?)" if found else ""


class Table:
    """The options of one command, in the order the recorded command line writes them."""

    def __init__(self, command: str, *options: Option | Iterable[Option]):
        self.command = command
        flat = [item for group in options
                for item in ((group,) if isinstance(group, Option) else group)]
        self.options: dict[str, Option] = {}
        for option in flat:  # an option shared by several methods is declared identically
            known = self.options.setdefault(option.name, option)
            if known != option:
                raise ValueError(f"Option {option.name!r} is declared twice, differently.")

    def __iter__(self):
        return iter(self.options.values())

    def __contains__(self, name: str) -> bool:
        return name in self.options

    def defaults(self) -> dict:
        return {name: option.default for name, option in self.options.items()}

    def settle(self, given: Mapping[str, Any]) -> dict:
        """Settings from given values (API keywords or parsed flags): unknown names refused
        with the closest known one, values checked, defaults filled in, every value settled."""
        for name in given:
            if name not in self.options:
                raise CnnvizError(f"Unknown option {name!r} for {self.command}"
                                  f"{closest(name, self.options)}; its options are "
                                  f"{', '.join(self.options)}.")
        settings = {}
        for name, option in self.options.items():
            value = given.get(name, MISSING)
            if value is MISSING or value is None:
                value = option.default
            if option.multiple:
                value = [] if value is None else [value] if isinstance(value, str | Path) \
                    else list(value)
            if option.settle is not None:
                value = option.settle(value)
            option.check(value)
            settings[name] = value
        return settings

    def refuse_ignored(self, settings: dict, given: Iterable[str]) -> None:
        """One sentence for a given option that cannot take effect with the other settings."""
        for name in given:
            option = self.options[name]
            if option.applies is not None and not option.applies(settings):
                raise CnnvizError(f"{option.long} applies only {option.when}, so it would be "
                                  "ignored here; leave it out.")

    def command_line(self, settings: Mapping[str, Any]) -> str:
        """The canonical command line: every recorded option that differs from its default,
        in table order, arguments first."""
        words = ["cnnviz", self.command]
        arguments = [option for option in self if option.argument]
        for option in [*arguments, *(option for option in self if not option.argument)]:
            value = settings.get(option.name, option.default)
            if option.recorded and value not in (None, [], False) and value != _default(option):
                words += option.words(value)
        return shlex.join(words)

    def given(self, settings: Mapping[str, Any]) -> list[str]:
        """The options of `settings` that differ from their defaults."""
        return [name for name, value in settings.items()
                if name in self.options and value not in (None, [], False)
                and value != _default(self.options[name])]


def _default(option: Option):
    """The default as a settled value compares (a list for a repeatable option)."""
    return list(option.default or []) if option.multiple else option.default


def group_of(options: Iterable[Option], group: str) -> list[Option]:
    """Options with their help section set to `group`."""
    from dataclasses import replace

    return [replace(option, group=group) for option in options]
