"""Manifests read back: what an earlier run into a folder left (resuming, reusing a folder),
and merging several output folders."""

import datetime
import json
import math
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from cnnviz_cli.errors import CnnvizError, reason
from cnnviz_cli.io.outputs import MANIFEST, RUN_CONTROL, Outputs
from cnnviz_cli.io.provenance import read_png_fields
from cnnviz_cli.version import __version__

FAITHFULNESS = "faithfulness"  # the name of the ranking of the methods in a manifest's metrics
EXAMPLES = "examples"  # the name of the merged dataset examples in a manifest's metrics


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
        raise CnnvizError(f"Cannot read {path}: {reason(error)}.") from None
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


def _key(record: dict) -> str:
    return record["file"].split("/", 1)[0]


def _differences(previous: dict, command: str, options: dict) -> str | None:
    """What makes an earlier run's results differ from this run's (None: nothing)."""
    old = {k: v for k, v in (previous.get("options") or {}).items() if k not in RUN_CONTROL}
    new = {k: v for k, v in options.items() if k not in RUN_CONTROL}
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if previous.get("command") != command:
        return f"command ({previous.get('command')})"
    return ", ".join(changed) or None


def _finished(root: Path, previous: dict) -> FinishedWork:
    """The inputs a manifest lists as finished whose files are all still on disk."""
    by_key: dict[str, list[dict]] = {}
    for record in previous.get("outputs", []):
        by_key.setdefault(_key(record), []).append(record)
    work = FinishedWork()
    for item in previous.get("inputs", []):
        records = by_key.get(item["key"], [])
        if all((root / record["file"]).is_file() for record in records):
            work.inputs.append(item)
            work.records += records
    return work


def rebuilt_work(outputs: Outputs) -> tuple[FinishedWork, list[dict]]:
    """The finished work of an earlier run of the same setup, read from the provenance of the
    PNGs in the folder (for a missing or corrupt manifest), and the records of every such PNG.

    An image counts as finished when every file in its folder is such a PNG and it has as many
    as the image with the most: files without provenance (or of another setup) count as not
    finished.
    """
    root = outputs.root
    found: dict[str, list[dict]] = {}
    foreign: set[str] = set()
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if "/" not in relative or not path.is_file() or path.name.startswith("."):
            continue
        key = relative.split("/", 1)[0]
        try:
            fields = read_png_fields(path) if path.suffix == ".png" else {}
        except CnnvizError:
            fields = {}
        record = fields.get("record")
        if (fields.get("command") != outputs.command or fields.get("setup") != outputs.setup
                or not isinstance(record, dict) or "input" not in record):
            foreign.add(key)
            continue
        found.setdefault(key, []).append({"file": relative, **record})
    complete = max((len(records) for key, records in found.items() if key not in foreign),
                   default=0)
    work = FinishedWork()
    for key, records in found.items():
        if key not in foreign and len(records) == complete:
            work.inputs.append({"input": records[0]["input"], "key": key})
            work.records += records
    return work, [record for records in found.values() for record in records]


def _earlier_run(outputs: Outputs, skip_existing: bool, notify) -> dict | None:
    """The manifest an earlier run left in the folder; rebuilt from the PNGs when it is
    corrupt (or missing, with skip_existing); None when there is none."""
    path = outputs.root / MANIFEST
    if path.is_file():
        try:
            return read_manifest(outputs.root)
        except CnnvizError as error:
            problem = str(error).rstrip(".")
    elif skip_existing:
        problem = f"There is no {MANIFEST} in {outputs.root}"
    else:
        return None
    work, records = rebuilt_work(outputs)
    if records:
        notify(f"{problem}; rebuilt the list of finished work from the provenance of "
               f"{len(records)} PNG(s): {len(work.inputs)} image(s) are finished.")
    elif path.is_file():
        notify(f"{problem}; no PNG in the folder carries this run's provenance, so a new "
               "manifest replaces it.")
    return {"command": outputs.command, "options": outputs.options, "outputs": records,
            "inputs": work.inputs}


def begin_run(outputs: Outputs, keys: set[str], skip_existing: bool = False,
              force: bool = False) -> set[str]:
    """Open an output folder for a run, settle what an earlier run left in it, and write the
    first manifest (before any image). Returns the inputs to leave out (`skip_existing`).

    An earlier run of the same command and options keeps its finished images that this run
    does not redo (with `skip_existing`: all, and this run leaves them out) listed in the new
    manifest; an earlier run of another setup is refused, unless `force`. Files of the earlier
    run that are not kept are deleted, so the folder holds only what its manifest lists.
    """
    outputs.open()
    notify = outputs.notify or (lambda message: None)
    previous = _earlier_run(outputs, skip_existing, notify)
    work = FinishedWork()
    if previous is not None and "runs" in previous:
        raise CnnvizError(f"{outputs.root} holds a report merged over other folders; choose "
                          "another --out.")
    differences = None if previous is None else _differences(previous, outputs.command,
                                                              outputs.options)
    if differences and not force:
        flag = "--skip-existing resumes only runs with the same options: " if skip_existing else ""
        raise CnnvizError(
            f"{outputs.root} holds the outputs of an earlier run with different {differences}; "
            f"{flag}add --force to replace them, or choose another --out."
        )
    if previous is not None and not differences:
        work = _finished(outputs.root, previous)
        if not skip_existing:
            work = FinishedWork([item for item in work.inputs if item["key"] not in keys],
                                [record for record in work.records if _key(record) not in keys])
        elsewhere = len(work.keys - keys)
        if elsewhere:
            notify(f"Kept the outputs of {elsewhere} image(s) an earlier run into "
                   f"{outputs.root} finished; the manifest goes on listing them.")
    kept = {record["file"] for record in work.records}
    stale = [record["file"] for record in (previous or {}).get("outputs", [])
             if record["file"] not in kept]
    if differences and stale:
        notify(f"Replacing the {len(stale)} files of an earlier run with different "
               f"{differences} in {outputs.root} (--force).")
    outputs.carry(work.records, work.inputs)
    outputs.write_manifest()
    outputs.remove(stale)
    return work.keys & keys if skip_existing else set()


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
    rows = []
    for numbers in _setups(runs):
        chosen = set(numbers)
        ranking = faithfulness_ranking([record for record in outputs if record["run"] in chosen])
        rows += [{**row, "runs": numbers} for row in ranking]
    return rows


def _setups(runs: list[dict]) -> list[list[int]]:
    """The numbers of the runs of each setup (such as the shards of one job)."""
    setups: dict[str, list[int]] = {}
    for number, run in enumerate(runs):
        setups.setdefault(_setup(run), []).append(number)
    return list(setups.values())


def merged_examples(runs: list[dict], outputs: list[dict]) -> list[dict]:
    """The global top K dataset examples (`maximize --from-images`) of each filter over the
    runs of one setup: one row per setup, layer and filter, with its `runs` and `examples`
    (records with the global `rank` and their `file`), best first as the runs rank them
    (techniques.examples.ranking)."""
    rows = []
    for numbers in _setups(runs):
        chosen, groups = set(numbers), {}
        for record in outputs:
            if record["run"] in chosen and record.get("kind") == "example":
                groups.setdefault((record["layer"], record["filter"]), []).append(record)
        top = (runs[numbers[0]].get("options") or {}).get("top")
        for (layer, index), records in sorted(groups.items()):
            records.sort(key=lambda record: (-record["activation"], record["key"]))
            rows.append({"layer": layer, "filter": index, "runs": numbers, "examples": [
                {**record, "rank": rank} for rank, record in enumerate(records[:top], start=1)]})
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
    examples = merged_examples(merged["runs"], merged["outputs"])
    merged["metrics"] = {name: rows for name, rows in
                         ((FAITHFULNESS, ranking), (EXAMPLES, examples)) if rows}
    return merged
