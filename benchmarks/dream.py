"""`cnnviz dream` on a 2048x2048 photo with tiling: time, and peak memory against 512x512.

Each size runs in its own process (peak RSS is a per-process number; TensorFlow's allocations
are invisible to tracemalloc). The time is compared with the ideal: bare compiled
forward+backward passes of the same model over the same pixels (one 512x512 tile, timed, times
the number of tile-sized pieces all steps of all octaves visit).

Run: `python -m benchmarks.dream`.
"""

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

PHOTO = Path(__file__).resolve().parent.parent / "sample_images" / "astronaut.jpg"
LAYER, TILE, OCTAVES, STEPS = "block3_conv2", 512, 3, 10
MEMORY_LIMIT = 1.5


def _case(size: int) -> dict:
    """One dream at `size` x `size` in this process: seconds, objective, peak RSS."""
    import numpy as np
    from PIL import Image

    from cnnviz_cli.models.resolve import ModelRequest, resolve_model
    from cnnviz_cli.techniques.dream import DreamConfig, Dreamer, DreamLayer

    resolved = resolve_model(ModelRequest("demo"))
    photo = np.asarray(Image.open(PHOTO).convert("RGB").resize((size, size), Image.LANCZOS))
    config = DreamConfig(octaves=OCTAVES, steps=STEPS, tile=TILE)
    dreamer = Dreamer(resolved.model, [DreamLayer(LAYER)], resolved.preprocess, config)
    start = time.perf_counter()
    result = dreamer(photo)
    seconds = time.perf_counter() - start
    pixels = sum(height * width for height, width in result.octave_shapes) * STEPS
    return {
        "seconds": seconds,
        "tile_pieces": pixels / TILE**2,
        "objective_ratio": result.objective_after / result.objective_before,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "tile_seconds": _bare_tile_seconds(resolved) if size > TILE else None,
    }


def _bare_tile_seconds(resolved) -> float:
    """Median time of a bare compiled forward+backward pass on one tile (the reference)."""
    import statistics

    import tensorflow as tf

    from cnnviz_cli.models.extract import build_extractor

    network = build_extractor(resolved.model, [LAYER])

    @tf.function
    def step(images):
        with tf.GradientTape() as tape:
            tape.watch(images)
            score = tf.reduce_mean(tf.square(network(resolved.preprocess(images))[0]))
        return tape.gradient(score, images)

    images = tf.random.uniform((1, TILE, TILE, 3), 0, 255)
    step(images)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        step(images).numpy()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _in_subprocess(size: int) -> dict:
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.dream", "--case", str(size)],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def measure() -> list[dict]:
    """Rows for `make bench`: dream time at 2048x2048, and its peak memory against 512x512."""
    small, large = _in_subprocess(TILE), _in_subprocess(2048)
    ideal = large["tile_seconds"] * large["tile_pieces"]
    memory = large["rss_mb"] / small["rss_mb"]
    setup = f"demo {LAYER}, {OCTAVES} octaves x {STEPS} steps, tile {TILE}"
    return [
        {
            "benchmark": "dream 2048x2048 tiled",
            "ours_s": large["seconds"],
            "reference_s": ideal,
            "ratio": large["seconds"] / ideal,
            "note": f"{setup}; reference: bare forward+backward over the same pixels; first "
            f"call, tracing included; objective x{large['objective_ratio']:.1f}",
        },
        {
            "benchmark": "dream peak memory 2048 vs 512",
            "ours_s": large["seconds"],
            "reference_s": small["seconds"],
            "ratio": memory,
            "note": f"peak RSS {large['rss_mb']:.0f} MB vs {small['rss_mb']:.0f} MB "
            f"(limit {MEMORY_LIMIT}x: {'ok' if memory <= MEMORY_LIMIT else 'OVER'})",
        },
    ]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--case"]:
        print(json.dumps(_case(int(sys.argv[2]))))
    else:
        for row in measure():
            print(f"{row['benchmark']:32} {row['ours_s']:8.2f}s {row['reference_s']:8.2f}s "
                  f"x{row['ratio']:.2f}  {row['note']}")
