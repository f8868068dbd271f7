"""The `cnnviz` command group. Command modules import TensorFlow only inside their bodies."""

import os
import sys
import traceback
from pathlib import Path

import click

from cnnviz_cli.cli import completion, config, crash
from cnnviz_cli.cli.activations import activations
from cnnviz_cli.cli.cam import cam
from cnnviz_cli.cli.common import ARGUMENTS
from cnnviz_cli.cli.doctor import doctor, version_option
from cnnviz_cli.cli.dream import dream
from cnnviz_cli.cli.filters import filters
from cnnviz_cli.cli.info import info
from cnnviz_cli.cli.inspect import layers, models
from cnnviz_cli.cli.maximize import maximize
from cnnviz_cli.cli.reconstruct import reconstruct
from cnnviz_cli.cli.report import report
from cnnviz_cli.errors import CnnvizError


def _error_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _debug(ctx: click.Context) -> bool:
    return bool(ctx.obj and ctx.obj.get("debug"))


def _fail(ctx: click.Context, error: BaseException, message: str, exit_code: int):
    """Raise `message` as the one error line with `exit_code`; with --debug, print the
    traceback first (and nothing else changes)."""
    if _debug(ctx):
        click.echo("".join(traceback.format_exception(error)), err=True, nl=False)
    failure = click.ClickException(message)
    failure.exit_code = exit_code
    raise failure from None


class CnnvizGroup(click.Group):
    """Turns CnnvizError and unexpected exceptions into one line and an exit code."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[ARGUMENTS] = list(args)
        return super().parse_args(ctx, args)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is not None and ctx.resilient_parsing:  # completing a command line
            completion.attach(command, ctx)
        return command

    def invoke(self, ctx: click.Context):
        from cnnviz_cli.api.session import SETTINGS_SOURCES

        token = SETTINGS_SOURCES.set(config.current_sources)
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, BrokenPipeError):
            raise
        except KeyboardInterrupt as error:  # Ctrl-C, or SIGTERM during a run (errors.Interrupted)
            click.echo("Interrupted.", err=True)
            raise click.exceptions.Exit(getattr(error, "exit_code", 130)) from None
        except CnnvizError as error:
            line = config.annotate(ctx.meta.get(crash.RUNNING), _error_line(error))
            _fail(ctx, error, line, error.exit_code)
        except Exception as error:
            if isinstance(error, MemoryError) or type(error).__name__ == "ResourceExhaustedError":
                _fail(ctx, error,
                      "Ran out of memory; lower --batch-size (or --size, --tile) and run again.", 2)
            _fail(ctx, error, crash.sentence(ctx, error), 1)
        finally:
            SETTINGS_SOURCES.reset(token)


@click.group(cls=CnnvizGroup, context_settings={"help_option_names": ["-h", "--help"]})
@version_option
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or summaries.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              envvar=config.CONFIG_VARIABLE, show_envvar=True, metavar="FILE",
              help="Settings file [default: the nearest cnnviz.toml, or pyproject.toml with "
              "[tool.cnnviz]].")
@click.option("--profile", metavar="NAME", envvar=config.PROFILE_VARIABLE, show_envvar=True,
              shell_complete=completion.complete_profile,
              help="Also use the settings of [profiles.NAME] of the settings file.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, quiet: bool, config_file: Path | None,
        profile: str | None) -> None:
    """See what a Keras CNN has learned and why it decides what it decides.

    Every command takes a model (-m NAME or a .keras/.h5 file; default: the bundled
    shapes demo model), writes PNGs and a manifest.json into --out, and prints where.
    Settings come from the command line, then CNNVIZ_<COMMAND>_<OPTION> environment variables
    (CNNVIZ_CAM_METHOD=layercam), then the --profile, then cnnviz.toml or [tool.cnnviz] in
    pyproject.toml (keys: the long option names, per command in [cam], ...).

    \b
    Example:
      cnnviz activations sample_images/star.png -o out/
    """
    ctx.obj = {"debug": debug, "quiet": quiet}
    config.settle(cli, ctx, config_file, profile)


for command in (activations, cam, doctor, dream, filters, info, layers, maximize, models,
                reconstruct, report):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    try:
        cli(prog_name="cnnviz")
    except BrokenPipeError:  # e.g. `cnnviz models | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
