"""Which metrics a cam run computes, and the per-method table of the trust metrics.

The metrics declare themselves next to their computation: deletion and insertion in
techniques/metrics.py (`FAITHFULNESS_METRICS`), the trust metrics in techniques/trust.py
(`TRUST_METRICS`); neither imports TensorFlow until it computes.
"""

import math
from collections.abc import Sequence

from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.techniques.metrics import FAITHFULNESS_METRICS
from cnnviz_cli.techniques.trust import TRUST_METRICS


def resolve_metrics(metrics: bool | Sequence[str], sanity: bool = False) -> list[str]:
    """`metrics` (True: deletion and insertion; or names) -> the metric names, in order, no
    repeats; deletion and insertion come together and `sanity` adds randomisation."""
    if isinstance(metrics, str):
        metrics = [metrics]
    names = list(FAITHFULNESS_METRICS) if metrics is True else [
        name.strip().lower() for name in (metrics or ())]
    for name in names:
        if name not in (*FAITHFULNESS_METRICS, *TRUST_METRICS):
            raise CnnvizError(f"Unknown metric {name!r}; choose from "
                              f"{', '.join((*FAITHFULNESS_METRICS, *TRUST_METRICS))}.")
    if set(names) & set(FAITHFULNESS_METRICS):
        names += list(FAITHFULNESS_METRICS)
    return list(dict.fromkeys(names + (["randomisation"] if sanity else [])))


def trust_table(records: list[dict]) -> list[dict]:
    """Per method, the mean of every trust metric over its heatmaps (overlay records)."""
    sums: dict[str, dict[str, list[float]]] = {}
    for record in records:
        if record.get("kind") != "overlay":
            continue
        for name, metric in TRUST_METRICS.items():
            if metric.field in record:
                values = sums.setdefault(record["method"], {}).setdefault(name, [])
                values.append(float(record[metric.field]))
    return [{"method": method, "maps": max(len(values) for values in columns.values()),
             **{name: math.fsum(values) / len(values) for name, values in columns.items()}}
            for method, columns in sums.items()]
