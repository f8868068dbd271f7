"""The raw heatmaps of an earlier `cnnviz cam` run (`--baseline`), by image, method and class."""

from pathlib import Path, PurePosixPath

import numpy as np

from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.io.manifests import read_manifest


class BaselineMaps:
    """The `.npy` maps an earlier run wrote with --save-npy, listed in its manifest.

    A map is found by the image's output folder name (its key), the method and the class index;
    the manifest may also be a merged one (`cnnviz report` over shards).
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        manifest = read_manifest(self.folder)
        self._files = {
            (PurePosixPath(record["file"]).parent.name, record["method"], record["class"]):
                record["file"]
            for record in manifest.get("outputs", [])
            if record.get("kind") == "map" and {"method", "class"} <= record.keys()
        }
        if not self._files:
            raise CnnvizError(
                f"--baseline {folder}: its manifest lists no raw heatmaps; run the baseline "
                "with `cnnviz cam ... --save-npy`."
            )

    def get(self, key: str, method: str, class_index: int) -> np.ndarray | None:
        """The baseline's map, or None when it has none (or the file is gone or unreadable)."""
        file = self._files.get((key, method, class_index))
        if file is None:
            return None
        try:
            return np.load(self.folder / file)
        except (OSError, ValueError):
            return None
