"""Manifests read back: resuming a run (--skip-existing) and merging several output folders."""

import datetime
import json
import math
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from cnnviz_cli import __version__
from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.io.outputs import MANIFEST

# Options that change how a run is carried out, not what it computes.
RUN_CONTROL = frozenset(
    {"images", "out", "skip_existing", "fail_fast", "shard", "batch_size", "print_json",
     "fail_under", "fail_over", "fail_under_each", "fail_over_each"}
)
FAITHFULNESS = "faithfulness"  # the name of the ranking of the methods in a manifest's metrics


def read_manifest(folder: Path) -> dict:
    """The manifest of an output folder, or one CnnvizError sentence."""
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CnnvizError(
            f"No {MANIFEST} in {folder}: give an output folder written by a cnnviz command."
        ) from None
    except (OSError, ValueError) as error:
        raise CnnvizError(f"Cannot read {path}: {error}.") from None
    if not isinstance(manifest, dict) or manifest.get("tool") != "cnnviz":
        raise CnnvizError(f"{path} is not a cnnviz manifest.")
    return manifest


@dataclass
class FinishedWork:
    """What an earlier run into the same folder finished: its inputs and their files."""

    inputs: list[dict] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)

    @property
    def keys(self) -> set[str]:
        return {item["key"] for item in self.inputs}


def finished_work(root: Path, command: str, options: dict) -> FinishedWork:
    """Inputs a previous run of the same command and options finished, files still on disk."""
    if not (Path(root) / MANIFEST).is_file():
        return FinishedWork()
    previous = read_manifest(root)
    old = {k: v for k, v in (previous.get("options") or {}).items() if k not in RUN_CONTROL}
    new = {k: v for k, v in options.items() if k not in RUN_CONTROL}
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if previous.get("command") != command or changed:
        what = ", ".join(changed) or f"the command {previous.get('command')}"
        raise CnnvizError(
            f"--skip-existing: {Path(root) / MANIFEST} comes from a run with different {what}; "
            "rerun with the same options, or choose another --out."
        )
    by_key: dict[str, list[dict]] = {}
    for record in previous.get("outputs", []):
        by_key.setdefault(record["file"].split("/", 1)[0], []).append(record)
    work = FinishedWork()
    for item in previous.get("inputs", []):
        records = by_key.get(item["key"], [])
        if all((Path(root) / record["file"]).is_file() for record in records):
            work.inputs.append(item)
            work.records += records
    return work


def faithfulness_ranking(records: list[dict]) -> list[dict]:
    """The methods ranked by mean insertion AUC minus mean deletion AUC, best first.

    Each heatmap counts once (its overlay record), if it carries both AUCs (`cam --metrics`).
    """
    aucs: dict[str, list[tuple[float, float]]] = {}
    for record in records:
        if record.get("kind") == "overlay" and {"deletion_auc", "insertion_auc"} <= record.keys():
            aucs.setdefault(record["method"], []).append(
                (record["deletion_auc"], record["insertion_auc"])
            )
    rows = []
    for method, pairs in aucs.items():
        deletion = math.fsum(pair[0] for pair in pairs) / len(pairs)
        insertion = math.fsum(pair[1] for pair in pairs) / len(pairs)
        rows.append({"method": method, "maps": len(pairs), "deletion_auc": deletion,
                     "insertion_auc": insertion, "insertion_minus_deletion": insertion - deletion})
    rows.sort(key=lambda row: -row["insertion_minus_deletion"])
    return [{"rank": rank, **row} for rank, row in enumerate(rows, start=1)]


def _setup(run: dict) -> str:
    """What a run computed (command, model, options that change results), as comparable text."""
    options = {k: v for k, v in (run.get("options") or {}).items() if k not in RUN_CONTROL}
    return json.dumps([run.get("command"), run.get("model"), options], sort_keys=True,
                      default=str)


def merged_faithfulness(runs: list[dict], outputs: list[dict]) -> list[dict]:
    """`faithfulness_ranking` over the heatmaps of all runs of the same setup (such as the
    shards of one job), one ranking per setup; each row lists its `runs` (their numbers)."""
    setups: dict[str, list[int]] = {}
    for number, run in enumerate(runs):
        setups.setdefault(_setup(run), []).append(number)
    rows = []
    for numbers in setups.values():
        chosen = set(numbers)
        ranking = faithfulness_ranking([record for record in outputs if record["run"] in chosen])
        rows += [{**row, "runs": numbers} for row in ranking]
    return rows


def _rebased(manifest: dict, folder: str) -> dict:
    """A manifest in merged form (a list of runs), its paths under `folder`."""

    def under(path: str) -> str:
        return posixpath.normpath(posixpath.join(folder, path))

    if "runs" not in manifest:
        run = {name: manifest.get(name)
               for name in ("command", "created", "options", "model", "runtime")}
        manifest = {
            "runs": [{"folder": ".", **run, "metrics": manifest.get("metrics") or {}}],
            **{
                part: [{**item, "run": 0} for item in manifest.get(part, [])]
                for part in ("outputs", "inputs", "failures")
            },
        }
    return {
        "runs": [{**run, "folder": under(run["folder"])} for run in manifest["runs"]],
        "outputs": [{**record, "file": under(record["file"])} for record in manifest["outputs"]],
        "inputs": manifest["inputs"],
        "failures": manifest["failures"],
    }


def merge_manifests(parts: list[tuple[dict, str]]) -> dict:
    """One manifest listing the runs of several (manifest, folder relative to the merged one)."""
    merged = {
        "tool": "cnnviz",
        "version": __version__,
        "command": "report",
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "runs": [],
        "outputs": [],
        "inputs": [],
        "failures": [],
    }
    for manifest, folder in parts:
        part = _rebased(manifest, folder)
        offset = len(merged["runs"])
        merged["runs"] += part["runs"]
        for name in ("outputs", "inputs", "failures"):
            merged[name] += [{**item, "run": item["run"] + offset} for item in part[name]]
    ranking = merged_faithfulness(merged["runs"], merged["outputs"])
    merged["metrics"] = {FAITHFULNESS: ranking} if ranking else {}
    return merged
