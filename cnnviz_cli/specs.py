"""Parsers of the small text specs that options take, shared by the commands and the Python API.

They raise CnnvizError (never a Click exception): the API calls them too.
"""

import re

from cnnviz_cli.errors import CnnvizError

FILTER_GRAMMAR = "`3`, `0-15`, `1,5,9` or `all` (ranges low-high)"
DEFAULT_FILTERS = 16
_RANGE = re.compile(r"\s*([0-9]+)\s*(?:-\s*([0-9]+)\s*)?")


def filter_ranges(spec: str) -> list[tuple[int, int]] | None:
    """`3`, `0-15`, `1,5,9`, `all` or a comma list of these -> (low, high) ranges; None = all.

    Checks only the grammar: whether the layer has these filters is `parse_filters`' job.
    """
    parts = spec.split(",")
    if any(part.strip().lower() == "all" for part in parts):
        return None
    matches = [_RANGE.fullmatch(part) for part in parts]
    if not all(matches) or any(m[2] and int(m[2]) < int(m[1]) for m in matches):
        raise CnnvizError(f"{spec!r} is not a filter spec: expected {FILTER_GRAMMAR}.")
    return [(int(m[1]), int(m[2] or m[1])) for m in matches]


def parse_filters(spec: str | None, count: int, layer: str | None = None) -> list[int]:
    """Filter indices of a layer with `count` filters, in the order written, without repeats.

    Args:
        spec: as `filter_ranges` takes it; None: the first 16 filters.
        count: how many filters (channels) the layer has.
        layer: the layer's name, for the error message.
    """
    if spec is None:
        return list(range(min(DEFAULT_FILTERS, count)))
    ranges = filter_ranges(spec)
    if ranges is None:
        return list(range(count))
    if (highest := max(high for _, high in ranges)) >= count:
        where = f"layer {layer!r}" if layer else "the layer"
        raise CnnvizError(f"--filter {spec} is out of range: it asks for filter {highest}, but "
                          f"{where} has {count} filters (0 to {count - 1}).")
    return list(dict.fromkeys(i for low, high in ranges for i in range(low, high + 1)))


TASKS = ("classify", "binary", "multilabel", "regress", "segment", "embed")  # models.heads
DIRECTIONS = ("up", "down")  # a regression head: explain what raises or lowers the output
