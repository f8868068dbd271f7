"""Which metrics a cam run computes, and the per-method table of the trust metrics.

The trust metrics (computed by techniques/trust.py) say whether a heatmap can be trusted:
faithfulness beyond deletion (`road`, `mufidelity`), robustness (`stability`), dependence on the
model and the class (`randomisation`, `random-logit`) and simplicity (`sparseness`,
`complexity`). This module imports no TensorFlow: the CLI builds its options from it.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

from cnnviz_cli.errors import CnnvizError


@dataclass(frozen=True)
class TrustMetric:
    """A trust metric: its field in the heatmap records, its direction and what it measures."""

    field: str
    higher_is_better: bool
    meaning: str
    random: bool = False  # draws at random (seeded with --seed)


TRUST_METRICS = {
    "road": TrustMetric("road", True, "ROAD: probability with the least minus the most relevant "
                        "pixels imputed, mean over 10-90 %", True),
    "mufidelity": TrustMetric("mufidelity", True, "correlation of the heat of random pixel "
                              "subsets with the score drop when they are removed", True),
    "stability": TrustMetric("stability", False, "largest relative change of the map under "
                             "small input noise", True),
    "randomisation": TrustMetric("randomisation", False, "rank correlation with the map after "
                                 "re-initialising every layer", True),
    "random-logit": TrustMetric("random_logit", False, "rank correlation with the map of a "
                                "random other class", True),
    "sparseness": TrustMetric("sparseness", True, "Gini index of the map"),
    "complexity": TrustMetric("complexity", False, "entropy of the map normalised to sum 1"),
}
FAITHFULNESS_METRICS = ("deletion", "insertion")  # computed together, by --metrics


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
