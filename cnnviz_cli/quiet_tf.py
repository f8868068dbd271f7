"""Import TensorFlow once with its C++ start-up notes and Python warnings kept off stderr.

TensorFlow's native libraries print absl/oneDNN/CUDA notices while loading, before any
log-level setting applies; they would bury cnnviz's one-line errors. Python errors raised
during the import still propagate normally.
"""

import os
import sys


def import_tensorflow() -> None:
    """Import TensorFlow (and Keras) with file descriptor 2 pointed at /dev/null meanwhile."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    silent = os.open(os.devnull, os.O_WRONLY)
    os.dup2(silent, 2)
    try:
        import keras  # noqa: F401
        import tensorflow
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(silent)
    tensorflow.get_logger().setLevel("ERROR")  # e.g. retracing notes for many image sizes
