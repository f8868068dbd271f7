"""The command-line shell: help without TensorFlow, errors and exit codes, end-to-end runs."""

import subprocess
import sys

import pytest

COMMANDS = ["activations", "filters", "layers", "models"]


def test_help_never_imports_tensorflow():
    script = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from cnnviz_cli.cli import cli\n"
        "for args in [['--help']] + [[c, '--help'] for c in cli.commands]:\n"
        "    result = CliRunner().invoke(cli, args)\n"
        "    assert result.exit_code == 0, (args, result.output)\n"
        "    assert 'Example:' in result.output, args\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules, len(cli.commands))\n"
    )
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True).stdout.split()
    assert output[:2] == ["False", "False"]
    assert int(output[2]) >= len(COMMANDS)


@pytest.mark.parametrize("args, message", [
    (["activations", "nothing_here.png"], "not a file, a folder or a matching glob"),
    (["activations", "x", "-m", "vgg61"], "Unknown model 'vgg61'"),
    (["activations", "x", "-m", "missing.keras"], "does not exist"),
    (["filters", "-l", "gap"], "not a Conv2D"),
    (["filters", "-l", "nope"], "No such layer: 'nope'"),
    (["activations", "IMG", "-l", "predictions"], "not a (batch, height, width, channels)"),
])
def test_usage_errors_exit_2_with_one_line(run_cli, tmp_path, sample_dir, args, message):
    args = [str(sample_dir / "star.png") if a == "IMG" else a for a in args]
    result = run_cli(*args, "-o", tmp_path / "o", expect=2)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output


def test_out_of_memory_is_one_actionable_line(run_cli, tmp_path, sample_dir, monkeypatch):
    from cnnviz_cli.techniques.activations import ActivationExtractor

    def exhausted(self, inputs):
        raise MemoryError()

    monkeypatch.setattr(ActivationExtractor, "__call__", exhausted)
    result = run_cli("activations", sample_dir, "-o", tmp_path / "o", "--batch-size", "64",
                     expect=2)
    assert result.output.strip().splitlines() == [
        "Error: Ran out of memory; lower --batch-size (or --size, --tile) and run again."]
