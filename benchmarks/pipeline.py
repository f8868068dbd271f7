"""Batch-run costs: `--help` time, startup to first image, images/s, peak RSS 50 vs 1000 images.

Every command runs in a fresh subprocess, as in a batch script. Run alone with
`python -m benchmarks.run pipeline`.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.cam import bare_forward_backward, median_seconds

CNNVIZ = str(Path(sys.executable).with_name("cnnviz"))
SIZE = 128  # the demo model's images
FOLDER_SIZES = (50, 200, 1000)
RSS_SCRIPT = (
    "import resource, subprocess, sys\n"
    "subprocess.run(sys.argv[1:], check=True, capture_output=True)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)
REFERENCE_STARTUP = (
    "import numpy as np\n"
    "from cnnviz_cli.models.resolve import ModelRequest, resolve_model\n"
    "resolved = resolve_model(ModelRequest('demo'))\n"
    f"resolved.model(resolved.prepare(np.zeros((1, {SIZE}, {SIZE}, 3), np.uint8)))\n"
)


def wall_seconds(command: list[str], repeats: int = 5) -> float:
    """Median wall time of a subprocess."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def image_folders(root: Path, size: int = SIZE,
                  counts: tuple[int, ...] = FOLDER_SIZES) -> dict[int, Path]:
    """Folders of 50, 200 and 1000 (`counts`) generated demo images (PNG)."""
    from PIL import Image

    from cnnviz_cli.demo.shapes import make_dataset

    images, _ = make_dataset(max(counts), size, seed=3)
    folders = {}
    for count in counts:
        folders[count] = root / f"images{count}"
        folders[count].mkdir()
        for index in range(count):
            Image.fromarray(images[index]).save(folders[count] / f"shape{index:04d}.png")
    return folders


def timed_run(command: list[str], out: Path) -> tuple[float, float]:
    """(seconds until the first PNG is on disk, seconds until the process ended)."""
    with tempfile.TemporaryFile("w+") as errors:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors, text=True)
        first = None
        while process.poll() is None:
            if first is None and out.is_dir() and next(out.glob("*/*.png"), None):
                first = time.perf_counter() - start
            time.sleep(0.01)
        total = time.perf_counter() - start
        if process.returncode != 0:
            errors.seek(0)
            raise RuntimeError(f"{' '.join(command)} failed: {errors.read()[-500:]}")
    return first or total, total


def peak_rss_megabytes(command: list[str]) -> float:
    output = subprocess.run([sys.executable, "-c", RSS_SCRIPT, *command], check=True,
                            capture_output=True, text=True).stdout
    return int(output.split()[-1]) / 1024


def bare_seconds_per_image(model_spec: str, size: int, batch: int) -> float:
    """A bare compiled forward+backward pass over one batch, per image."""
    import numpy as np

    from cnnviz_cli.models.resolve import ModelRequest, resolve_model

    weights = "none" if model_spec != "demo" else None
    model = resolve_model(ModelRequest(model_spec, weights=weights)).model
    inputs = np.random.default_rng(0).uniform(0, 1, (batch, size, size, 3)).astype("float32")
    step = bare_forward_backward(model, (size, size, 3))
    return median_seconds(lambda: step(inputs)) / batch


def measure() -> list[dict]:
    rows = []
    help_time = wall_seconds([CNNVIZ, "--help"])
    python_time = wall_seconds([sys.executable, "-c", "pass"])
    rows.append({
        "benchmark": "cnnviz --help wall time", "ours_s": help_time, "reference_s": python_time,
        "ratio": help_time / python_time,
        "note": f"reference: bare `python -c pass`; target < 0.5 s: "
        f"{'met' if help_time < 0.5 else 'NOT met'}",
    })
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        folders = image_folders(root)
        rows += _throughput_rows(root, folders[200])
        rows.append(_rss_row(root, folders))
    return rows


def _throughput_rows(root: Path, folder: Path) -> list[dict]:
    """Startup to first image and images/s of `cam` over 200 images, demo and MobileNetV2."""
    startup_reference = wall_seconds([sys.executable, "-c", REFERENCE_STARTUP], repeats=3)
    rows = []
    for model, size, batch in (("demo", SIZE, 16), ("mobilenet_v2", 224, 16)):
        out = root / f"cam-{model}"
        weights = ["--weights", "none"] if model != "demo" else []
        first, total = timed_run([CNNVIZ, "-q", "cam", str(folder), "-m", model, *weights,
                                  "--size", str(size), "--batch-size", str(batch), "-o", str(out)],
                                 out)
        count = len(list(folder.iterdir()))
        steady = (total - first) / (count - batch)  # seconds per image after the first batch
        reference = bare_seconds_per_image(model, size, batch)
        if model == "demo":
            rows.append({
                "benchmark": "startup to first image (cam, demo model)", "ours_s": first,
                "reference_s": startup_reference, "ratio": first / startup_reference,
                "note": "reference: a Python process that imports TensorFlow, loads the demo "
                "model and runs one forward pass",
            })
        rows.append({
            "benchmark": f"cam gradcam over {count} images, {model} {size}px, batch {batch}",
            "ours_s": steady, "reference_s": reference, "ratio": steady / reference,
            "note": f"seconds per image after the first batch: decode, explain, colour, PNG "
            f"encode, write; {1 / steady:.1f} images/s steady, {count / total:.1f} images/s "
            f"including startup ({total:.1f} s in all)",
        })
    return rows


def _rss_row(root: Path, folders: dict[int, Path]) -> dict:
    peaks = {}
    for count in (50, 1000):
        out = root / f"rss-{count}"
        peaks[count] = peak_rss_megabytes([CNNVIZ, "-q", "cam", str(folders[count]), "-o",
                                           str(out)])
    ratio = peaks[1000] / peaks[50]
    return {
        "benchmark": "peak RSS, cam over 1000 vs 50 images (demo)", "ours_s": None,
        "reference_s": None, "ratio": ratio,
        "note": f"{peaks[50]:.0f} MB at 50 images, {peaks[1000]:.0f} MB at 1000; goal: within "
        f"10 % ({'met' if ratio <= 1.1 else 'NOT met'})",
    }


if __name__ == "__main__":
    os.execv(sys.executable, [sys.executable, "-m", "benchmarks.run", "pipeline"])
