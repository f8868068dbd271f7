"""The recorded command line replays: for every command, option sets generated from its table
give a line that, parsed again by the command and settled, gives the same settings; and a
replay of recorded lines writes byte-identical PNGs."""

import importlib
import shlex
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from cnnviz_cli.errors import CnnvizError

COMMANDS = ["activations", "cam", "dream", "filters", "maximize", "reconstruct"]
WORD = st.text(string.ascii_letters + string.digits + "_./: -", min_size=1, max_size=10)
NAME = st.text(string.ascii_letters + string.digits + "_./", min_size=1, max_size=10).filter(
    lambda text: not text.startswith("-"))  # a positional word: never read as an option


def table_of(command: str):
    return importlib.import_module(f"cnnviz_cli.api.{command}").table()


def _number(option):
    low = -10**6 if option.low is None else option.low
    high = 10**6 if option.high is None else option.high
    if option.kind is int:
        return st.integers(int(low) + option.open_low, int(high) - option.open_high)
    return st.floats(low, high, exclude_min=option.open_low, exclude_max=option.open_high,
                     allow_nan=False, allow_infinity=False)


def _gate(name: str):
    from cnnviz_cli.api.gates import GATE_METRICS

    under = name.startswith("fail_under")
    metrics = [metric for metric, spec in GATE_METRICS.items()
               if spec.higher_is_better == under]
    return st.tuples(st.sampled_from(metrics), st.floats(-10, 10, allow_nan=False))


def _special(option):
    """Strategies of the options whose settle reads a grammar (one value each)."""
    if option.name == "methods":
        from cnnviz_cli.techniques.cam import methods

        return st.sampled_from(sorted(methods()))
    if option.metavar == "METRIC=VALUE":
        return _gate(option.name)
    return {
        "shard": st.integers(1, 9).flatmap(lambda n: st.tuples(st.integers(1, n), st.just(n))),
        "position": st.tuples(st.integers(0, 99), st.integers(0, 99)),
        "channel": st.one_of(st.just("mean"), st.integers(0, 999).map(str)),
        "filters": st.one_of(st.integers(0, 99).map(str), st.tuples(
            st.integers(0, 50), st.integers(0, 50)).map(lambda p: f"{min(p)}-{max(p)}")),
    }.get(option.name)


def value_of(option):
    """A strategy of the values `option` takes, one value or a list for a repeatable one."""
    one = _special(option)
    if one is None:
        if option.kind is bool:
            return st.booleans()
        if isinstance(option.kind, tuple):
            one = st.sampled_from(option.kind)
        elif option.kind in (int, float):
            one = _number(option)
        else:
            one = NAME if option.argument else WORD
    if option.multiple:
        return st.lists(one, min_size=1 if option.argument else 0, max_size=3,
                        unique_by=str)
    return one


def option_sets(command: str):
    """Dicts of given options: any subset of the table's recorded options."""
    recorded = [option for option in table_of(command) if option.recorded]
    required = {option.name: value_of(option) for option in recorded if option.argument}
    optional = {option.name: value_of(option) for option in recorded if not option.argument}
    return st.fixed_dictionaries(required, optional=optional)


def plain(value):
    """A setting as the manifest stores it (paths as text, sequences as lists)."""
    if isinstance(value, tuple | list):
        return [plain(item) for item in value]
    return str(value) if isinstance(value, Path) else value


@pytest.mark.parametrize("command", COMMANDS)
def test_the_recorded_line_parses_back_to_the_same_settings(command):
    from cnnviz_cli.cli import cli

    table, click_command = table_of(command), cli.commands[command]

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(option_sets(command))
    def check(options):
        try:
            settled = table.settle(options)
        except CnnvizError:
            reject()
        words = shlex.split(table.command_line(settled))
        assert words[:2] == ["cnnviz", command]
        with click_command.make_context(command, words[2:]) as ctx:
            parsed = {name: value for name, value in ctx.params.items() if name in table}
        again = table.settle(parsed)
        for option in table:
            if option.recorded:
                assert plain(again[option.name]) == plain(settled[option.name]), option.name

    check()


@pytest.fixture(scope="module")
def tiny_image(tmp_path_factory):
    import numpy as np
    from PIL import Image

    from cnnviz_cli.demo.shapes import draw_scene

    image, _ = draw_scene(np.random.default_rng(3), 40, [3])
    path = tmp_path_factory.mktemp("tiny") / "star.png"
    Image.fromarray(image).save(path)
    return path


@pytest.fixture(scope="module")
def demo_labels(tmp_path_factory, demo_resolved):
    """The demo model's labels renamed, as a text file: a run that uses it records it."""
    path = tmp_path_factory.mktemp("labels") / "labels.txt"
    path.write_text("".join(f"shape-{label}\n" for label in demo_resolved.labels))
    return path


def pictures(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*.png"))}


@pytest.mark.parametrize(("command", "arguments"), [
    ("cam", {"metric": ["sparseness"], "methods": ["gradcam", "saliency"], "size": 32,
             "classes": ["shape-star"], "preprocess": "unit"}),
    ("activations", {"layers": ["block1_conv1"], "max_channels": 4, "order": "index",
                     "size": 32, "alpha": 0.3}),
])
def test_a_recorded_line_replays_to_the_same_pixels(command, arguments, tiny_image, demo_labels,
                                                      tmp_path):
    from click.testing import CliRunner

    import cnnviz_cli
    from cnnviz_cli.cli import cli

    first = tmp_path / "api"
    result = getattr(cnnviz_cli, command)("demo", str(tiny_image), labels=str(demo_labels),
                                          out=first, **arguments)
    line = result.command_line
    assert f"--labels {demo_labels}" in line
    assert ("--preprocess unit" in line) == ("preprocess" in arguments)
    words = shlex.split(line)
    second = tmp_path / "replay"
    replay = CliRunner().invoke(cli, [*words[1:], "-q", "-o", str(second)])
    assert replay.exit_code == 0, replay.output
    written = pictures(first)
    assert written and pictures(second) == written


FILTER_SETTINGS = st.fixed_dictionaries({}, optional={
    "layer": st.sampled_from(["auto", "block1_conv1", "block3_conv2"]),
    "channel": st.one_of(st.just("mean"), st.integers(0, 2).map(str)),
    "order": value_of(table_of("filters").options["order"]),
    "max_filters": st.integers(1, 12),
    "colormap": st.sampled_from(["RdBu_r", "viridis", "gray"]),
})


@settings(max_examples=4, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@pytest.mark.slow  # over ~3 s
@given(FILTER_SETTINGS)
def test_generated_filters_lines_replay_to_the_same_pixels(tmp_path_factory, options):
    """A sample of generated option sets: the API's run and its recorded line's replay."""
    from click.testing import CliRunner

    import cnnviz_cli
    from cnnviz_cli.cli import cli

    folder = tmp_path_factory.mktemp("filters")
    result = cnnviz_cli.filters("demo", out=folder / "api", **options)
    replay = CliRunner().invoke(cli, [*shlex.split(result.command_line)[1:], "-q", "-o",
                                      str(folder / "replay")])
    assert replay.exit_code == 0, replay.output
    written = pictures(folder / "api")
    assert written and pictures(folder / "replay") == written
