"""`make bench`: run every benchmark module and write benchmarks/RESULTS.md.

A benchmark module is any `benchmarks/<name>.py` with `measure() -> list[dict]`, each row
`{"benchmark", "ours_s", "reference_s", "ratio", "note"}`. A module that is missing a
dependency or fails is recorded as a failed row; the others still run. The rows are kept in
benchmarks/rows.json, and RESULTS.md is rewritten after every module.

    python -m benchmarks.run            # every module afresh
    python -m benchmarks.run cam        # measure these modules again, keep the others' rows
"""

import datetime
import importlib
import importlib.metadata
import json
import os
import pkgutil
import platform
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FOLDER = Path(__file__).parent
RESULTS = FOLDER / "RESULTS.md"
ROWS = FOLDER / "rows.json"
PACKAGES = ("tensorflow", "keras", "numpy", "pillow", "click", "tf-keras-vis")
LOAD_AT_START = os.getloadavg()[0]


def module_names() -> list[str]:
    """The benchmark modules beside this file, in name order."""
    return sorted(
        info.name for info in pkgutil.iter_modules([str(FOLDER)])
        if info.name not in ("run", "__main__") and not info.name.startswith("_")
    )


def run_module(name: str) -> list[dict]:
    """The rows of one module, or one row saying why it could not be measured."""
    started = time.perf_counter()
    try:
        module = importlib.import_module(f"benchmarks.{name}")
        if not hasattr(module, "measure"):
            return []
        rows = module.measure()
    except Exception as error:  # noqa: BLE001 - one broken module must not stop the others
        traceback.print_exc()
        last = str(error).strip().splitlines()
        return [{"benchmark": f"{name} (module failed)", "ours_s": None, "reference_s": None,
                 "ratio": None, "note": f"{type(error).__name__}: {last[0] if last else ''}"}]
    print(f"{name}: {len(rows)} rows in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return rows


def machine() -> list[str]:
    """Lines describing the computer the numbers come from."""
    cpu = platform.processor() or platform.machine()
    memory = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        kilobytes = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kilobytes / 2**20:.1f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return [
        f"- {platform.platform()}, Python {platform.python_version()}",
        f"- {cpu}, {os.cpu_count()} logical cores{memory}",
        f"- GPU: {', '.join(g.name for g in gpus) if gpus else 'none (CPU only)'}",
        f"- load average when the run started: {LOAD_AT_START:.1f} (other work on the machine "
        "slows every number down)",
    ]


def versions() -> str:
    found = []
    for package in ("cnnviz", *PACKAGES):
        try:
            found.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{package} not installed")
    return ", ".join(found)


def _number(value) -> str:
    if value is None:
        return ""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def table(rows: list[dict]) -> list[str]:
    lines = ["| benchmark | ours (s) | reference (s) | ratio | note |",
             "| --- | --: | --: | --: | --- |"]
    for row in rows:
        cells = [row.get("benchmark", ""), _number(row.get("ours_s")),
                 _number(row.get("reference_s")), _number(row.get("ratio")), row.get("note", "")]
        lines.append("| " + " | ".join(str(cell).replace("|", "/") for cell in cells) + " |")
    return lines


def write_results(measured: dict[str, dict]) -> None:
    """RESULTS.md from the stored rows of every module."""
    rows = [row for name in sorted(measured) for row in measured[name]["rows"]]
    stamps = ", ".join(f"{name} {measured[name]['measured']}" for name in sorted(measured))
    text = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`python -m benchmarks.run`). Measured: " + stamps + ".",
        "",
        "**ratio** = ours / reference. Unless a row says otherwise the reference is a bare",
        "compiled forward+backward pass of the same model and batch (`tf.function`, no cnnviz",
        "code), so the ratio is what the technique costs in units of the cheapest gradient pass.",
        "Rows comparing with tf-keras-vis give ours / theirs. Where a row has a goal, ours and",
        "the reference are timed in turns and the ratio is the median of the turns' ratios (the",
        "machine's speed drifts; the seconds shown are each side's median).",
        "",
        "## Machine",
        "",
        *machine(),
        f"- {versions()}",
        "",
        "## Results",
        "",
        *table(rows),
        "",
    ]
    RESULTS.write_text("\n".join(text))


def main(names: list[str]) -> None:
    available = module_names()
    unknown = sorted(set(names) - set(available))
    if unknown:
        sys.exit(f"No benchmark module {', '.join(unknown)}; there are: {', '.join(available)}.")
    measured = json.loads(ROWS.read_text()) if names and ROWS.is_file() else {}
    measured = {name: value for name, value in measured.items() if name in available}
    for name in names or available:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        measured[name] = {"measured": stamp, "rows": run_module(name)}
        ROWS.write_text(json.dumps(measured, indent=2) + "\n")
        write_results(measured)
    print(f"Wrote {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
