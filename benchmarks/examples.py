"""`cnnviz maximize --from-images` memory: peak RSS over 1000 tiny images against 50.

The running top-K keeps only K patches per filter, so memory should not grow with the number
of images. Run: `python -m benchmarks.run examples`.
"""

import tempfile
from pathlib import Path

from benchmarks.pipeline import CNNVIZ, image_folders, peak_rss_megabytes

SIZE = 32  # pixels: tiny demo images
COUNTS = (50, 1000)
GOAL = 1.1


def measure() -> list[dict]:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        peaks = {count: peak_rss_megabytes([
            CNNVIZ, "-q", "maximize", "--from-images", str(folder), "-l", "block3_conv2",
            "--filter", "0-7", "--size", str(SIZE), "-o", str(root / f"out{count}")])
            for count, folder in image_folders(root, SIZE, COUNTS).items()}
    ratio = peaks[1000] / peaks[50]
    return [{
        "benchmark": "peak RSS, maximize --from-images over 1000 vs 50 images (demo, 32 px, "
        "8 filters, top 9)", "ours_s": None, "reference_s": None, "ratio": ratio,
        "note": f"{peaks[50]:.0f} MB at 50 images, {peaks[1000]:.0f} MB at 1000; goal: within "
        f"10 % ({'met' if ratio <= GOAL else 'NOT met'})",
    }]
