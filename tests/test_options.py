"""How options behave: repeats, combinations that cannot take effect, --debug, help texts."""

import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from PIL import Image

from cnnviz_cli.cli import cli
from cnnviz_cli.cli.common import CnnvizCommand, parse_shard

VISUALISING = ["activations", "cam", "dream", "filters", "maximize", "reconstruct"]
IMAGE_COMMANDS = [name for name in VISUALISING if name not in ("filters", "maximize")]


def error_lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("Error:")]


def one_error(result, pattern: str) -> str:
    """Exactly one `Error:` line, matching `pattern`, no traceback; returns it."""
    (line,) = error_lines(result)
    assert re.search(pattern, line), line
    assert "Traceback" not in result.output
    return line


def sample_value(param: click.Option) -> str:
    """A value the option accepts: its default, else one of its type."""
    if param.callback is parse_shard:
        return "1/2"
    if isinstance(param.type, click.Path) and param.type.exists:
        return __file__ if param.type.file_okay else str(Path(__file__).parent)
    if isinstance(param.type, click.Choice):
        return str(param.type.choices[0])
    if param.metavar == "X,Y":
        return "1,1"
    if isinstance(param.default, int | float | str) and not isinstance(param.default, bool):
        return str(param.default)
    if isinstance(param.type, click.FloatRange) and param.type.max is not None:
        return str((param.type.min + param.type.max) / 2)  # inside an open range too
    if isinstance(param.type, click.IntRange | click.FloatRange):
        return str(max(param.type.min or 1, 1))
    return "x"


def single_valued(command: click.Command) -> list[click.Option]:
    return [param for param in command.params if isinstance(param, click.Option)
            and not (param.multiple or param.count or param.is_flag)]


# --- repeated options -------------------------------------------------------------------------

@pytest.mark.parametrize("name", VISUALISING)
def test_every_command_refuses_a_single_valued_option_given_twice(run_cli, name):
    command = cli.commands[name]
    images = ["x.png"] if name in IMAGE_COMMANDS else []
    for param in single_valued(command):
        flag, value = param.opts[-1], sample_value(param)
        result = run_cli(name, *images, flag, value, flag, value, expect=2)
        one_error(result, re.escape(f"{'/'.join(param.opts)} was given 2 times, but it takes "
                                    "one value"))


@pytest.mark.parametrize("args", [
    ["cam", "x.png", "-l", "a", "-l", "b"],
    ["maximize", "-l", "a", "--layer=b"],
    ["reconstruct", "x.png", "--method", "guided", "--method", "inversion"],
])
def test_the_examples_of_the_issue_are_refused(run_cli, args):
    one_error(run_cli(*args, expect=2), "was given 2 times")


def test_visualising_commands_share_the_command_class():
    assert all(isinstance(cli.commands[name], CnnvizCommand) for name in VISUALISING)


def test_a_flag_given_twice_is_harmless(run_cli, tmp_path):
    out = tmp_path / "out"
    result = run_cli("filters", "--json", "--json", "-q", "-q", "--max-filters", "2", "-o", out)
    assert json.loads(result.stdout)["outputs"]


def test_maximize_filters_accumulate(run_cli, tmp_path):
    def targets(*filters: str) -> list[int]:
        out = tmp_path / "-".join(filters)
        run_cli("maximize", "-l", "block1_conv1", *filters, "--steps", "1", "--size", "16", "-q",
                "-o", out)
        manifest = json.loads((out / "manifest.json").read_text())
        return next(r["targets"] for r in manifest["outputs"] if r["file"].endswith("grid.png"))

    assert targets("--filter", "1", "--filter", "5-6") == targets("--filter", "1,5-6") == [1, 5, 6]


# --- options that cannot take effect ------------------------------------------------------------

REFUSED = [
    (["maximize", "-l", "block1_conv1", "--filter", "0", "--class", "star"], "-l/--layer"),
    (["maximize", "--filter", "0", "--class", "star"], "--filter"),
    (["reconstruct", "x.png", "--tv", "0.2"], "--tv applies only with --method inversion"),
    (["reconstruct", "x.png", "--method", "deconvnet", "--seed", "1"], "--seed applies only"),
    (["reconstruct", "x.png", "--method", "inversion", "--top-channels", "2"], "--top-channels"),
    (["reconstruct", "x.png", "--method", "inversion", "--filter", "1"], "--filter applies only"),
    (["reconstruct", "x.png", "--method", "inversion", "--extent", "unit"], "--extent"),
    (["reconstruct", "x.png", "--filter", "1", "--top-channels", "2"],
     "--top-channels applies only without --filter"),
    (["cam", "x.png", "--samples", "4"], "--samples applies only when --method includes smooth"),
    (["cam", "x.png", "--method", "gradcam,scorecam", "--max-n", "4"], "--max-n"),
    (["cam", "x.png", "--ig-baseline", "noise"], "--ig-baseline"),
    (["cam", "x.png", "--method", "integrated-gradients", "--seed", "1"], "--seed"),
    (["cam", "x.png", "--metric-steps", "4"], "--metric-steps applies only with --metrics"),
]


@pytest.mark.parametrize(("args", "culprit"), REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_an_option_that_cannot_take_effect_is_refused(run_cli, args, culprit):
    one_error(run_cli(*args, expect=2), re.escape(culprit))


@pytest.mark.parametrize("args", [
    ["cam", "x.png", "--method", "all", "--samples", "4", "--max-n", "3", "--ig-steps", "4"],
    ["cam", "x.png", "--method", "saliency", "--method", "SmoothGrad", "--seed", "2"],
    ["cam", "x.png", "--method", "integrated-gradients", "--ig-baseline", "noise", "--seed", "2"],
    ["cam", "x.png", "--metrics", "--metric-steps", "4"],
    ["maximize", "--class", "star", "--steps", "3"],
    ["reconstruct", "x.png", "--method", "inversion", "--tv", "0.2", "--seed", "1"],
    ["reconstruct", "x.png", "--filter", "1", "--extent", "unit"],
])
def test_options_that_take_effect_are_accepted(args):
    command = cli.commands[args[0]]
    with command.make_context(args[0], args[1:]) as ctx:
        assert ctx.params


def test_every_rule_names_parameters_of_its_command():
    for command in cli.commands.values():
        names = {param.name for param in command.params}
        for rule in getattr(command, "rules", ()):
            assert set(rule.names) <= names, (command.name, rule.names)


# --- one filter grammar -------------------------------------------------------------------------

def test_reconstruct_takes_the_filter_ranges_maximize_takes(run_cli, tmp_path, sample_dir):
    out = tmp_path / "out"
    run_cli("reconstruct", sample_dir / "star.png", "-l", "block1_conv1", "--filter", "0-2",
            "--filter", "5", "--size", "32", "-o", out)
    (record,) = json.loads((out / "manifest.json").read_text())["outputs"]
    assert record["channels"] == [0, 1, 2, 5]
    result = run_cli("reconstruct", sample_dir / "star.png", "--filter", "2-1", "-o", out,
                     expect=2)
    one_error(result, re.escape("'2-1' is not a filter spec: expected `3`, `0-15`"))


def test_filter_spec_errors_are_cnnviz_errors():
    from cnnviz_cli.errors import CnnvizError
    from cnnviz_cli.specs import parse_filters

    assert parse_filters("3, 0-1,all", 4) == [0, 1, 2, 3]
    with pytest.raises(CnnvizError, match="not a filter spec"):
        parse_filters("x", 4)
    with pytest.raises(CnnvizError, match=r"asks for filter 9, but layer 'conv' has 4 filters"):
        parse_filters("1,9", 4, "conv")


# --- --debug only adds the traceback ------------------------------------------------------------

@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory, sample_dir):
    folder = tmp_path_factory.mktemp("mixed")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    Image.open(sample_dir / "star.png").save(folder / "star.png")
    return folder


@pytest.mark.parametrize(("args", "traceback"), [
    (["filters", "--max-filters", "0"], False),  # a usage error Click finds
    (["filters", "-l", "nope"], True),  # a CnnvizError: unknown layer
    (["activations", "MIXED", "-l", "-3", "--fail-fast"], True),  # a bad image, stopping
    (["activations", "MIXED", "-l", "-3"], False),  # a bad image, skipped
], ids=["usage", "unknown-layer", "bad-image-fail-fast", "bad-image"])
def test_debug_only_adds_the_traceback(tmp_path, mixed_folder, args, traceback):
    args = [str(mixed_folder) if arg == "MIXED" else arg for arg in args]
    runs = {}
    for name, debug in (("plain", []), ("before", ["--debug"]), ("after", None)):
        command = [*debug, *args] if debug is not None else [args[0], "--debug", *args[1:]]
        runs[name] = CliRunner().invoke(cli, [*command, "-o", str(tmp_path / name)])
    plain = runs.pop("plain")
    assert plain.exit_code in (1, 2) and "Traceback" not in plain.output
    for name, result in runs.items():
        assert result.exit_code == plain.exit_code, result.output
        assert ("Traceback" in result.output) == traceback, result.output
        assert error_lines(result) == error_lines(plain)
        lines = iter(result.output.splitlines())  # every line of the plain run, in order
        expected = plain.output.replace(str(tmp_path / "plain"), str(tmp_path / name))
        assert all(line in lines for line in expected.splitlines()), result.output


def test_an_unexpected_error_keeps_its_exit_code_under_debug(tmp_path, monkeypatch):
    from cnnviz_cli.techniques import filters

    def broken(*_args, **_kwargs):
        raise ValueError("boom")

    monkeypatch.setattr(filters, "kernel_tensor", broken)
    plain = CliRunner().invoke(cli, ["filters", "-o", str(tmp_path / "a")])
    debug = CliRunner().invoke(cli, ["filters", "--debug", "-o", str(tmp_path / "b")])
    assert plain.exit_code == debug.exit_code == 1
    for result, folder in ((plain, "a"), (debug, "b")):
        [line] = error_lines(result)
        assert line.startswith("Error: Internal error (ValueError: boom), a bug in cnnviz")
        assert line.endswith(f"traceback written to {tmp_path / folder / 'cnnviz-error.txt'}.")
    assert "Traceback" in debug.output and "Traceback" not in plain.output


# --- help texts ---------------------------------------------------------------------------------

def test_every_option_of_every_command_has_help():
    missing = [(name, param.opts) for name, command in cli.commands.items()
               for param in command.params if isinstance(param, click.Option) and not param.help]
    assert not missing


def test_top_level_help_shows_every_command_description_whole():
    result = CliRunner().invoke(cli, ["--help"], terminal_width=80)
    commands = result.output.split("Commands:", 1)[1]
    assert "..." not in commands
    for command in cli.commands.values():
        assert command.get_short_help_str(limit=1000) in commands


def test_layer_help_says_what_auto_means():
    for name in VISUALISING:
        (layer,) = [p for p in cli.commands[name].params if "--layer" in p.opts]
        assert re.search(r"`?auto`? (=|\()", layer.help), (name, layer.help)


def test_an_option_name_means_one_thing():
    """--alpha is overlay opacity and --top-k a number of classes, wherever they appear."""
    reconstruct = {opt for param in cli.commands["reconstruct"].params for opt in param.opts}
    assert {"--alpha-prior", "--top-channels"} <= reconstruct
    assert not {"--alpha", "--top-k"} & reconstruct
    for command in cli.commands.values():
        for param in command.params:
            if "--alpha" in param.opts:
                assert "opacity" in param.help.lower(), command.name
            if "--top-k" in param.opts:
                assert "predictions" in param.help, command.name
