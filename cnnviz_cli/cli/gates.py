"""The cam command's ground-truth and gate options, and the tables it prints.

What they compute lives in cnnviz_cli.api.gates; a failed gate exits 3 after everything is
written.
"""

from collections.abc import Callable
from pathlib import Path

import click

from cnnviz_cli.api.gates import HIGHER, LOWER, parse_gate
from cnnviz_cli.api.trust import TRUST_METRICS
from cnnviz_cli.cli.common import compose
from cnnviz_cli.errors import CnnvizError

GATE_EXIT_CODE = 3


def _parse_gates(_ctx: click.Context, param: click.Parameter, values: tuple[str, ...]):
    """METRIC=VALUE specs -> ((metric, threshold), ...), checked against the option's direction."""
    try:
        return tuple(parse_gate(value, param.name) for value in values)
    except CnnvizError as error:
        raise click.BadParameter(str(error)) from None


def _gate_option(name: str, help_text: str) -> Callable:
    return click.option(name, multiple=True, metavar="METRIC=VALUE", callback=_parse_gates,
                        help=help_text)


gate_options = compose(
    click.option(
        "--targets", type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="CSV of rows image,class[,mask] or image,class,x0,y0,x1,y1: the class to explain "
        "per image (matched by path, file name or stem; a row per class for several) and the "
        "object's region, which scores its heatmaps (pointing game, energy inside) and is the "
        "region a segmentation head explains. Images without a row (or class) get the default "
        "target: --class/--top-k, else their top-1 prediction.",
    ),
    click.option(
        "--baseline", type=click.Path(exists=True, file_okay=False, path_type=Path),
        help="Output folder of an earlier `cam --save-npy` run: correlation and top-20 % IoU of "
        "every heatmap with its map there (same image, method and class).",
    ),
    _gate_option("--fail-under", f"Exit 3 when a method's mean of METRIC ({HIGHER}) is below "
                 "VALUE; repeatable."),
    _gate_option("--fail-over", f"Exit 3 when a method's mean of METRIC ({LOWER}) is above "
                 "VALUE; repeatable."),
    _gate_option("--fail-under-each", "As --fail-under, for every single heatmap."),
    _gate_option("--fail-over-each", "As --fail-over, for every single heatmap."),
)


def print_gates(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Gates")
    for column in ("metric", "method", "rule", "value", "maps", "result"):
        table.add_column(column, justify="left" if column in ("metric", "method") else "right")
    for row in rows:
        value = "none" if row["value"] is None else f"{row['value']:.3f}"
        short = f" ({row['short']} short)" if row.get("short") else ""
        table.add_row(row["metric"], row["method"], row["rule"], value, f"{row['maps']}{short}",
                      "[green]pass[/]" if row["passed"] else "[bold red]FAIL[/]")
    Console(stderr=True).print(table)


def print_ranking(rows: list[dict]) -> None:
    """The faithfulness ranking (io.manifests.faithfulness_ranking) as a table on stderr."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Faithfulness (mean over heatmaps)")
    for column in ("rank", "method", "maps", "deletion ↓", "insertion ↑", "ins − del ↑"):
        table.add_column(column, justify="left" if column == "method" else "right", no_wrap=True)
    for row in rows:
        table.add_row(str(row["rank"]), row["method"], str(row["maps"]),
                      f"{row['deletion_auc']:.3f}", f"{row['insertion_auc']:.3f}",
                      f"{row['insertion_minus_deletion']:+.3f}")
    Console(stderr=True).print(table)


def print_trust(rows: list[dict]) -> None:
    """The trust metrics' means per method (api.trust.trust_table) as a table on stderr."""
    from rich.console import Console
    from rich.table import Table

    names = [name for name in TRUST_METRICS if any(name in row for row in rows)]
    table = Table(title="Trust metrics (mean over heatmaps)")
    table.add_column("method", no_wrap=True)
    table.add_column("maps", justify="right")
    for name in names:
        arrow = "↑" if TRUST_METRICS[name].higher_is_better else "↓"
        table.add_column(f"{name} {arrow}", justify="right", no_wrap=True)
    for row in rows:
        table.add_row(row["method"], str(row["maps"]),
                      *(f"{row[name]:.3f}" if name in row else "" for name in names))
    console = Console(stderr=True)
    if not console.is_terminal:  # a log: the table at its natural width, not 80 columns
        console.width = 200
    console.print(table)


def report_checks(result, quiet: bool) -> int:
    """Print the ranking, trust metrics and gates of a cam result; return how many gates
    failed."""
    if result.ranking and not quiet:
        print_ranking(result.ranking)
    if result.metrics.get("trust") and not quiet:
        print_trust(result.metrics["trust"])
    failed = sum(not row["passed"] for row in result.gates)
    if result.gates and (failed or not quiet):
        print_gates(result.gates)
    return failed
