"""Write the bundled shape sample images.

Usage: ``python -m cnnviz_cli.demo.make_samples [--out-dir DIR] [--seed S]``.
Writes one 128x128 single-shape PNG per class (``circle.png``, ...) and a few
160x160 two-shape PNGs (``star_and_ring.png``, ...) into ``sample_images/``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from cnnviz_cli.demo.shapes import CLASS_NAMES, draw_scene

SINGLE_SIZE = 128
PAIR_SIZE = 160
PAIRS = (("star", "ring"), ("circle", "square"), ("triangle", "cross"))


def write_samples(out_dir: Path, seed: int) -> list[Path]:
    """Draw the sample scenes with a fixed seed, save them as PNG and return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    scenes = [((name,), SINGLE_SIZE) for name in CLASS_NAMES] + [
        (pair, PAIR_SIZE) for pair in PAIRS
    ]
    paths = []
    for names, size in scenes:
        image, _ = draw_scene(rng, size, [CLASS_NAMES.index(name) for name in names])
        path = out_dir / f"{'_and_'.join(names)}.png"
        Image.fromarray(image).save(path, optimize=True)
        paths.append(path)
    return paths


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out-dir", type=Path, default=Path("sample_images"), help="destination folder"
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed for the scenes")
    arguments = parser.parse_args()
    for path in write_samples(arguments.out_dir, arguments.seed):
        print(path)


if __name__ == "__main__":
    main()
