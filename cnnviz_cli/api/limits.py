"""Limits a run checks before any work: an input size the machine cannot take."""

import os

from cnnviz_cli.api.tables import size_text
from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.io import DEFAULT_MAX_PIXELS


def check_input_size(model, options: dict) -> None:
    """Refuse, before any work, an input size (`size`, else the model's) of more pixels than
    `max_pixels` or whose batch alone would not fit in this machine's memory."""
    height, width = model.image_size(options.get("size"))
    pixels, limit = height * width, options.get("max_pixels") or DEFAULT_MAX_PIXELS
    size = (f"--size {size_text(options['size'])}" if options.get("size")
            else "The model's input size")
    if pixels > limit:
        raise CnnvizError(f"{size} makes inputs of {height}x{width} = {pixels:,} pixels, more "
                          f"than --max-pixels {limit:,}; give a smaller --size"
                          + (" (or raise --max-pixels)." if "max_pixels" in options else "."))
    batch = options.get("batch_size") or 1
    needed = 4 * pixels * model.channels * batch  # the float32 input batch alone
    if needed > _memory():
        raise CnnvizError(f"{size} makes a batch of {batch} {height}x{width} inputs, which "
                          f"alone needs {needed / 2**30:,.0f} GiB, more than this machine's "
                          f"{_memory() / 2**30:,.0f} GiB; give a smaller --size or --batch-size.")


def _memory() -> int:
    """This machine's physical memory in bytes (unlimited where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 1 << 62
