"""Ground truth, ranking and gates of `cnnviz cam`: --targets, --baseline, --fail-under/over.

Every heatmap's record gets its region scores (`pointing_hit`, `region_energy`) when --targets
gives the image a region, and its agreement with the baseline run's map of the same image,
method and class (`baseline_corr`, `baseline_iou`, or `"baseline": "missing"`). At the end each
gate is evaluated per method on the records (so --skip-existing runs count the carried ones),
written into the manifest and the report, printed as a table, and a failed gate exits 3. The
faithfulness ranking of the methods (`cam --metrics`) is made from the records the same way.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import click

from cnnviz_cli.cli.common import Run, compose
from cnnviz_cli.errors import CnnvizError

GATE_EXIT_CODE = 3


@dataclass(frozen=True)
class GateMetric:
    """A metric a gate may test: its field in the heatmap records and what computes it."""

    field: str
    higher_is_better: bool
    needs: str  # the option(s) that compute it


GATE_METRICS = {
    "insertion": GateMetric("insertion_auc", True, "--metrics"),
    "deletion": GateMetric("deletion_auc", False, "--metrics"),
    "pointing": GateMetric("pointing_hit", True, "--targets with masks or boxes"),
    "energy": GateMetric("region_energy", True, "--targets with masks or boxes"),
    "baseline-corr": GateMetric("baseline_corr", True, "--baseline"),
    "baseline-iou": GateMetric("baseline_iou", True, "--baseline"),
}
HIGHER = ", ".join(name for name, metric in GATE_METRICS.items() if metric.higher_is_better)
LOWER = ", ".join(name for name, metric in GATE_METRICS.items() if not metric.higher_is_better)


@dataclass(frozen=True)
class Gate:
    """`metric` must reach `threshold`: its mean per method, or with `each` every heatmap."""

    metric: str
    threshold: float
    each: bool = False

    @property
    def option(self) -> str:
        direction = "under" if GATE_METRICS[self.metric].higher_is_better else "over"
        return f"--fail-{direction}{'-each' if self.each else ''}"

    @property
    def rule(self) -> str:
        sign = "≥" if GATE_METRICS[self.metric].higher_is_better else "≤"
        return f"{'each' if self.each else 'mean'} {sign} {self.threshold:g}"

    def passes(self, value: float) -> bool:
        if GATE_METRICS[self.metric].higher_is_better:
            return value >= self.threshold
        return value <= self.threshold


def _parse_gates(_ctx: click.Context, param: click.Parameter, values: tuple[str, ...]):
    """METRIC=VALUE specs -> ((metric, threshold), ...), checked against the option's direction."""
    under = param.name.startswith("fail_under")
    gates = []
    for value in values:
        name, _, number = (part.strip() for part in value.partition("="))
        name = name.lower()
        if name not in GATE_METRICS:
            raise click.BadParameter(
                f"unknown metric {name!r} in {value!r}; --fail-under takes {HIGHER}, "
                f"--fail-over takes {LOWER}."
            )
        try:
            threshold = float(number)
        except ValueError:
            threshold = math.nan
        if not math.isfinite(threshold):
            raise click.BadParameter(f"expected METRIC=NUMBER such as {name}=0.5, got {value!r}.")
        if GATE_METRICS[name].higher_is_better != under:
            better, other = ("lower", "over") if under else ("higher", "under")
            each = "-each" if param.name.endswith("each") else ""
            raise click.BadParameter(
                f"{name} is better when {better}: use --fail-{other}{each} {name}={number}."
            )
        gates.append((name, threshold))
    return tuple(gates)


def _gate_option(name: str, help_text: str) -> Callable:
    return click.option(name, multiple=True, metavar="METRIC=VALUE", callback=_parse_gates,
                        help=help_text)


gate_options = compose(
    click.option(
        "--targets", type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="CSV of rows image,class[,mask] or image,class,x0,y0,x1,y1: the class to explain "
        "per image (matched by path, file name or stem) and the object's region, which scores "
        "its heatmaps (pointing game, energy inside). Images without a row (or class) get the "
        "default target: --class/--top-k, else their top-1 prediction.",
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


def evaluate_gates(gates: list[Gate], records: list[dict]) -> list[dict]:
    """One row per gate and method: the mean (an -each gate: the worst) of the metric over the
    method's heatmap records, and whether it passes. A gate that has no value fails."""
    heatmaps = [record for record in records if record.get("kind") == "overlay"]
    rows = []
    for gate in gates:
        metric = GATE_METRICS[gate.metric]
        for method in dict.fromkeys(record["method"] for record in heatmaps):
            values = [float(record[metric.field]) for record in heatmaps
                      if record["method"] == method and metric.field in record]
            worst = min if metric.higher_is_better else max
            value = None
            if values:
                value = worst(values) if gate.each else sum(values) / len(values)
            row = {"metric": gate.metric, "method": method, "rule": gate.rule,
                   "option": gate.option, "threshold": gate.threshold, "value": value,
                   "maps": len(values)}
            if gate.each:
                row["short"] = sum(not gate.passes(number) for number in values)
            rows.append({**row, "passed": value is not None and gate.passes(value)})
    return rows


def _print_gates(rows: list[dict]) -> None:
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


def _print_ranking(rows: list[dict]) -> None:
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


def _items(result) -> list[tuple[int, int, int]]:
    """(item, image index in the batch, class index) of every item of a CamBatch."""
    pairs = zip(result.image_indices, result.classes, strict=True)
    return [(item, int(image), int(class_index)) for item, (image, class_index) in enumerate(pairs)]


class Checks:
    """--targets, --baseline and the gates of one `cam` run, all checked before any image."""

    def __init__(self, run: Run, class_index: Callable[[str], int]):
        from cnnviz_cli.io.baseline import BaselineMaps
        from cnnviz_cli.io.targets import read_targets

        params, self.warn = run.params, run.warn
        self.gates = [
            Gate(metric, threshold, option.endswith("each"))
            for option in ("fail_under", "fail_over", "fail_under_each", "fail_over_each")
            for metric, threshold in params[option]
        ]
        if params["baseline"] and params["baseline"].resolve() == Path(params["out"]).resolve():
            raise CnnvizError("--baseline must be another folder than --out: this run would "
                              "overwrite the maps it compares with.")
        self.table = read_targets(params["targets"], class_index) if params["targets"] else None
        self.baseline = BaselineMaps(params["baseline"]) if params["baseline"] else None
        self.missing = 0  # heatmaps without a counterpart in the baseline
        computed = {"--metrics": params["metrics"], "--baseline": self.baseline is not None,
                    "--targets with masks or boxes": bool(self.table and self.table.has_regions)}
        for gate in self.gates:
            if not computed[GATE_METRICS[gate.metric].needs]:
                raise CnnvizError(
                    f"{gate.option} {gate.metric} needs {GATE_METRICS[gate.metric].needs}, "
                    "which computes it; add it or leave the gate out."
                )
        if self.table is not None:
            self._list_unmatched(run)

    def _list_unmatched(self, run: Run) -> None:
        from cnnviz_cli.io.images import collect_image_paths

        rows = self.table.unmatched(collect_image_paths(run.params["images"]))
        if rows:
            run.outputs.metrics["targets without an image"] = [
                {"row": row.where, "image": row.image} for row in rows
            ]
            shown = "; ".join(f"{row.where} ({row.image})" for row in rows[:5])
            self.warn(f"{len(rows)} row(s) of --targets name no input image: {shown}"
                      f"{' ...' if len(rows) > 5 else ''}.")

    def _rows(self, batch: list) -> list:
        return [self.table.row_for(image.path) for image in batch]

    def targets_for(self, batch: list, targets):
        """The Targets of one batch of LoadedImage: each image's class from --targets."""
        if self.table is None:
            return targets
        rows = self._rows(batch)
        return replace(targets, per_image=tuple(row and row.class_index for row in rows))

    def measure(self, batch: list, result) -> dict[str, list[dict]]:
        """Per method, per item of a CamBatch: the record fields of its region and baseline
        scores (empty dicts when neither option is given)."""
        fields = {method: [{} for _ in result.classes] for method in result.maps}
        if self.table is not None:
            self._score_regions(batch, result, fields)
        if self.baseline is not None:
            self._compare_with_baseline(batch, result, fields)
        return fields

    def _score_regions(self, batch: list, result, fields: dict) -> None:
        """Pointing game and energy of the heatmaps of a row's class (of every class the image
        explains when the row gives none) inside the row's region, at the model's input size."""
        import numpy as np

        from cnnviz_cli.techniques.agreement import region_energy
        from cnnviz_cli.techniques.metrics import pointing_game

        rows = self._rows(batch)
        items = [
            item for item, image, class_index in _items(result)
            if rows[image] is not None and rows[image].has_region
            and rows[image].class_index in (None, class_index)
        ]
        if not items:
            return
        regions = {}
        for image in dict.fromkeys(result.image_indices[items]):
            loaded = batch[image]
            regions[image] = rows[image].region(loaded.original.shape[:2], loaded.resized.shape[:2])
            if not regions[image].any():
                self.warn(f"{rows[image].where}: the region is empty in {loaded.path}; its "
                          "heatmaps score 0.")
        masks = np.stack([regions[image] for image in result.image_indices[items]])
        for method, maps in result.maps.items():
            hits, energy = pointing_game(maps[items], masks), region_energy(maps[items], masks)
            for item, hit, share in zip(items, hits, energy, strict=True):
                fields[method][item].update(pointing_hit=bool(hit), region_energy=float(share))

    def _compare_with_baseline(self, batch: list, result, fields: dict) -> None:
        from cnnviz_cli.techniques.agreement import correlation, top_region_iou

        for item, image, class_index in _items(result):
            for method, maps in result.maps.items():
                old = self.baseline.get(batch[image].key, method, class_index)
                if old is None:
                    self.missing += 1
                    fields[method][item]["baseline"] = "missing"
                else:
                    fields[method][item].update(baseline_corr=correlation(maps[item], old),
                                                baseline_iou=top_region_iou(maps[item], old))

    def finish(self, run: Run) -> None:
        """Rank the methods and evaluate the gates on every heatmap record, finish the run (its
        manifest and report show both) and exit 3 when a gate failed."""
        from cnnviz_cli.io.manifests import FAITHFULNESS, faithfulness_ranking

        if self.missing:
            self.warn(f"{self.missing} heatmap(s) have no counterpart in --baseline "
                      f"{self.baseline.folder} (recorded as missing).")
        run.outputs.end_batch()
        run.outputs.flush()
        records = run.outputs.records
        ranking = faithfulness_ranking(records)
        if ranking:
            run.outputs.metrics[FAITHFULNESS] = ranking
            if not run.quiet:
                _print_ranking(ranking)
        if not self.gates:
            run.finish()
            return
        rows = evaluate_gates(self.gates, records)
        run.outputs.metrics["gates"] = rows
        failed = sum(not row["passed"] for row in rows)
        if failed or not run.quiet:
            _print_gates(rows)
        run.finish()
        if failed:
            self.warn(f"{failed} of {len(rows)} gate(s) failed.")
            raise click.exceptions.Exit(GATE_EXIT_CODE)
