"""TensorBoard summaries of a run: its pictures as images and its numbers as scalars."""

import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from cnnviz_cli.errors import CnnvizError

PREFIX = "cnnviz"


class Summaries:
    """An event-file writer under `log_dir`, checked to be writable when it opens."""

    def __init__(self, log_dir: str | Path):
        import importlib.util

        import tensorflow as tf

        if importlib.util.find_spec("tensorboard") is None:
            raise CnnvizError("TensorBoard summaries need the tensorboard package: "
                              "pip install 'cnnviz[tensorboard]'.")
        self.log_dir = Path(log_dir)
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.log_dir):
                pass
        except OSError as error:
            reason = error.strerror or type(error).__name__
            raise CnnvizError(f"Cannot write TensorBoard summaries to {self.log_dir} "
                              f"({reason}); give a writable folder.") from None
        self._writer = tf.summary.create_file_writer(str(self.log_dir))

    def write(self, command: str, step: int, drawn: Iterable[tuple[str, np.ndarray, dict]]
              ) -> None:
        """Pictures (name, uint8 picture, numbers) at `step`, tagged `cnnviz/<command>/<name>`;
        each number as a scalar tagged `cnnviz/<command>/<name>/<number>`."""
        import tensorflow as tf

        with self._writer.as_default():
            for name, picture, numbers in drawn:
                tag = f"{PREFIX}/{command}/{name}"
                rgb = picture if picture.ndim == 3 else picture[..., None]
                tf.summary.image(tag, rgb[None], step=step)
                for number, value in numbers.items():
                    tf.summary.scalar(f"{tag}/{number}", float(value), step=step)
        self._writer.flush()

    def scalar(self, tag: str, value: float, step: int) -> None:
        """One number tagged `cnnviz/<tag>`."""
        import tensorflow as tf

        with self._writer.as_default():
            tf.summary.scalar(f"{PREFIX}/{tag}", float(value), step=step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
