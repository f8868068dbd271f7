"""Ground truth, ranking and gates of a cam run: targets, baseline, fail_under/fail_over.

Every heatmap's record gets its region scores (`pointing_hit`, `region_energy`) when the
targets give the image a region, and its agreement with the baseline run's map of the same
image, method and class (`baseline_corr`, `baseline_iou`, or `"baseline": "missing"`). At the
end each gate is evaluated per method on the records (so resumed runs count the carried ones)
and written into the manifest and the report. The faithfulness ranking of the methods
(metrics=True) and the table of the trust metrics (api.trust) are made from the records the
same way. The metrics a gate may test and their directions come from the metrics' own
declarations (techniques.metrics, techniques.trust).
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from cnnviz_cli.api.trust import trust_table
from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.techniques.metrics import FAITHFULNESS_METRICS
from cnnviz_cli.techniques.trust import TRUST_METRICS


@dataclass(frozen=True)
class GateMetric:
    """A metric a gate may test: its field in the heatmap records and what computes it."""

    field: str
    higher_is_better: bool
    needs: str  # the option(s) that compute it


GATE_METRICS = {
    **{name: GateMetric(metric.field, metric.higher_is_better, "--metrics")
       for name, metric in FAITHFULNESS_METRICS.items()},
    "pointing": GateMetric("pointing_hit", True, "--targets with masks or boxes"),
    "energy": GateMetric("region_energy", True, "--targets with masks or boxes"),
    "baseline-corr": GateMetric("baseline_corr", True, "--baseline"),
    "baseline-iou": GateMetric("baseline_iou", True, "--baseline"),
    **{name: GateMetric(metric.field, metric.higher_is_better, f"--metric {name}")
       for name, metric in TRUST_METRICS.items()},
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


def _items(result) -> list[tuple[int, int, int]]:
    """(item, image index in the batch, class index) of every item of a CamBatch."""
    pairs = zip(result.image_indices, result.classes, strict=True)
    return [(item, int(image), int(class_index)) for item, (image, class_index) in enumerate(pairs)]


def _row_of(rows: list, class_index: int):
    """The row of an image that scores the heatmaps of a class: the row of that class, else
    a row that gives no class (it stands for whatever the image explains)."""
    return next((row for row in rows if row.class_index == class_index),
                next((row for row in rows if row.class_index is None), None))


def _region(row, image):
    """A row's region as a boolean map at the image's input (resized) size."""
    if image.placement is None or image.placement.exact:
        return row.region(image.original.shape[:2], image.resized.shape[:2])
    return image.placement.enframe(row.region(image.original.shape[:2],
                                              image.original.shape[:2]))


GATE_OPTIONS = ("fail_under", "fail_over", "fail_under_each", "fail_over_each")


def parse_gate(spec, option: str) -> tuple[str, float]:
    """`METRIC=VALUE` (or a (metric, value) pair) of the gate option `option` (fail_under, ...)
    -> (metric, threshold), checked against the option's direction."""
    under = option.startswith("fail_under")
    flag = "--" + option.replace("_", "-")
    text = spec if isinstance(spec, str) else "=".join(str(part) for part in spec)
    name, _, number = (part.strip() for part in text.partition("="))
    name = name.lower()
    if name not in GATE_METRICS:
        raise CnnvizError(f"unknown metric {name!r} in {text!r}; --fail-under takes {HIGHER}, "
                          f"--fail-over takes {LOWER}.")
    try:
        threshold = float(number)
    except ValueError:
        threshold = math.nan
    if not math.isfinite(threshold):
        raise CnnvizError(f"{flag}: expected METRIC=NUMBER such as {name}=0.5, got {text!r}.")
    if GATE_METRICS[name].higher_is_better != under:
        better, other = ("lower", "over") if under else ("higher", "under")
        each = "-each" if option.endswith("each") else ""
        raise CnnvizError(
            f"{name} is better when {better}: use --fail-{other}{each} {name}={number}."
        )
    return name, threshold


class Checks:
    """The targets, baseline and gates of one cam run, all checked before any image."""

    def __init__(self, options: dict, class_index: Callable[[str], int],
                 warn: Callable[[str], None], images=None):
        from cnnviz_cli.io.baseline import BaselineMaps
        from cnnviz_cli.io.targets import read_targets

        self.warn = warn
        self.metrics: dict = {}
        self.gates = [Gate(*parse_gate(spec, option), option.endswith("each"))
                      for option in GATE_OPTIONS for spec in options[option]]
        baseline, targets, out = options["baseline"], options["targets"], options["out"]
        if baseline and out and Path(baseline).resolve() == Path(out).resolve():
            raise CnnvizError("--baseline must be another folder than --out: this run would "
                              "overwrite the maps it compares with.")
        self.table = read_targets(Path(targets), class_index) if targets else None
        self.baseline = BaselineMaps(Path(baseline)) if baseline else None
        self.missing = 0  # heatmaps without a counterpart in the baseline
        computed = {"--metrics": "deletion" in options["metrics"],
                    "--baseline": self.baseline is not None,
                    "--targets with masks or boxes": bool(self.table and self.table.has_regions),
                    **{f"--metric {name}": name in options["metrics"] for name in TRUST_METRICS}}
        for gate in self.gates:
            if not computed[GATE_METRICS[gate.metric].needs]:
                raise CnnvizError(
                    f"{gate.option} {gate.metric} needs {GATE_METRICS[gate.metric].needs}, "
                    "which computes it; add it or leave the gate out."
                )
        if self.table is not None and images is not None:
            self._list_unmatched(images)

    def _list_unmatched(self, images) -> None:
        from cnnviz_cli.api.inputs import collect_inputs

        paths = [item.path for item in collect_inputs(images) if item.path is not None]
        rows = self.table.unmatched(paths)
        if rows:
            self.metrics["targets without an image"] = [
                {"row": row.where, "image": row.image} for row in rows
            ]
            shown = "; ".join(f"{row.where} ({row.image})" for row in rows[:5])
            self.warn(f"{len(rows)} row(s) of --targets name no input image: {shown}"
                      f"{' ...' if len(rows) > 5 else ''}.")

    def _rows(self, batch: list) -> list[list]:
        return [[] if image.path is None else self.table.rows_for(image.path) for image in batch]

    def targets_for(self, batch: list, targets, with_regions: bool = False):
        """The Targets of one batch of LoadedImage: each image's classes from its rows (none:
        the default target) and, `with_regions` (a segmentation head), the rows' regions as
        the regions to explain."""
        if self.table is None:
            return targets
        rows = self._rows(batch)
        per_image = tuple(tuple(row.class_index for row in found) or None for found in rows)
        if not with_regions:
            return replace(targets, per_image=per_image)
        regions = tuple({row.class_index: _region(row, image) for row in found if row.has_region}
                        for found, image in zip(rows, batch, strict=True))
        return replace(targets, per_image=per_image, regions=regions)

    def measure(self, batch: list, result) -> dict[str, list[dict]]:
        """Per method, per item of a CamBatch: the record fields of its region and baseline
        scores (empty dicts when neither is given)."""
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
        regions, empty = {}, set()  # item -> its row's region at the input size
        for item, image, class_index in _items(result):
            row = _row_of(rows[image], class_index)
            if row is not None and row.has_region:
                regions[item] = _region(row, batch[image])
                if not regions[item].any() and row.where not in empty:
                    empty.add(row.where)
                    self.warn(f"{row.where}: the region is empty in {batch[image].title}; its "
                              "heatmaps score 0.")
        if not regions:
            return
        items = list(regions)
        masks = np.stack(list(regions.values()))
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

    def finish(self, records: list[dict]) -> dict:
        """The ranking and the gate rows of every heatmap record, as manifest metrics."""
        from cnnviz_cli.io.manifests import FAITHFULNESS, faithfulness_ranking

        if self.missing:
            self.warn(f"{self.missing} heatmap(s) have no counterpart in --baseline "
                      f"{self.baseline.folder} (recorded as missing).")
        ranking = faithfulness_ranking(records)
        if ranking:
            self.metrics[FAITHFULNESS] = ranking
        trust = trust_table(records)
        if trust:
            self.metrics["trust"] = trust
        if self.gates:
            self.metrics["gates"] = evaluate_gates(self.gates, records)
        return self.metrics
