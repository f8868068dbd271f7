"""An internal error (a bug, not a user's mistake): its traceback goes into a file in --out and
the user gets one sentence saying where to report it."""

import datetime
import shlex
import sys
import tempfile
import traceback
from importlib import metadata
from pathlib import Path

import click

RUNNING = "cnnviz.running"  # ctx.meta key: the context of the command being run
ERROR_FILE = "cnnviz-error.txt"


def report_address() -> str:
    """The issue tracker named in the package metadata (Project-URL: Issues, ...)."""
    try:
        urls = metadata.metadata("cnnviz").get_all("Project-URL") or []
    except metadata.PackageNotFoundError:
        urls = []
    for entry in urls:
        label, _, url = entry.partition(",")
        if label.strip().lower() in ("issues", "bug tracker", "tracker"):
            return url.strip()
    return "the cnnviz issue tracker"


def _folder(ctx: click.Context) -> Path:
    """--out of the command that failed (its default folder without one)."""
    running = ctx.meta.get(RUNNING)
    if running is None:
        return Path(tempfile.gettempdir())
    out = running.params.get("out")
    return Path(out) if out else Path("cnnviz-out") / (running.info_name or "cnnviz")


def write_report(ctx: click.Context, error: BaseException) -> Path | None:
    """Write the command line, the versions and the traceback into --out (else the temporary
    folder); return the file (None when no folder can be written)."""
    from cnnviz_cli.api.doctor import version_line

    text = (f"{datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}\n"
            f"{shlex.join(['cnnviz', *sys.argv[1:]])}\n{version_line()}\n\n"
            + "".join(traceback.format_exception(error)))
    for folder in (_folder(ctx), Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / ERROR_FILE).write_text(text)
            return folder / ERROR_FILE
        except OSError:
            continue
    return None


def sentence(ctx: click.Context, error: BaseException) -> str:
    """`Internal error (...): a bug in cnnviz; please report it at ... with FILE.`"""
    line = (str(error).strip().splitlines() or [""])[0].rstrip(".")
    what = f"{type(error).__name__}: {line}" if line else type(error).__name__
    path = write_report(ctx, error)
    where = f"written to {path}" if path else "that `cnnviz --debug ...` prints"
    return (f"Internal error ({what}), a bug in cnnviz, not in what you gave it; please report "
            f"it at {report_address()} with the traceback {where}.")
