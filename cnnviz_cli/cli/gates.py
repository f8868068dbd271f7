"""The cam command's ground-truth and gate options, and the tables it prints.

What they compute lives in cnnviz_cli.api.gates; a failed gate exits 3 after everything is
written.
"""

GATE_EXIT_CODE = 3


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

    from cnnviz_cli.techniques.trust import TRUST_METRICS

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
