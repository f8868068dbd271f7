"""`doctor`: what this machine gives cnnviz, for bug reports and offline or GPU machines.

Every check is a `Check`: what was found, whether it is fine, and whether a command needs it
(a missing optional piece only turns off a feature, such as .onnx models or --tensorboard).
"""

import os
import platform
import sys
import tempfile
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from cnnviz_cli.version import __version__

DISTRIBUTIONS = {  # what `pip install` names each package (the first one installed counts)
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tf-nightly"),
    "keras": ("keras",),
    "numpy": ("numpy",),
    "pillow": ("pillow",),
    "matplotlib": ("matplotlib",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "tensorboard": ("tensorboard",),
}
OPTIONAL = {"onnxruntime": "pip install onnxruntime, to read .onnx models",
            "tensorboard": "pip install tensorboard, for --tensorboard"}


@dataclass(frozen=True)
class Check:
    """One line of the doctor's table."""

    name: str
    found: str
    ok: bool = True
    needed: bool = True
    hint: str = ""  # what to do when not ok

    def as_dict(self) -> dict:
        return asdict(self)


def version(package: str) -> str | None:
    """The installed version of a package (by any of its distribution names), without
    importing it; None when it is not installed."""
    for name in DISTRIBUTIONS.get(package, (package,)):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def version_line() -> str:
    """`cnnviz X, TensorFlow Y, Keras Z, Python W` (read without importing TensorFlow)."""
    return (f"cnnviz {__version__}, TensorFlow {version('tensorflow') or 'not installed'}, "
            f"Keras {version('keras') or 'not installed'}, Python {platform.python_version()}")


def _packages() -> list[Check]:
    checks = [Check("python", f"{platform.python_version()} ({sys.executable})",
                    sys.version_info >= (3, 11), hint="cnnviz needs Python 3.11 or newer"),
              Check("cnnviz", __version__)]
    for package in DISTRIBUTIONS:
        found = version(package)
        optional = OPTIONAL.get(package)
        checks.append(Check(package, found or "not installed", found is not None,
                            optional is None, optional or f"pip install {package}"))
    return checks


def _tensorflow() -> list[Check]:
    from cnnviz_cli.quiet_tf import import_tensorflow

    try:
        import_tensorflow()
        import tensorflow as tf
    except Exception as error:  # a broken install: say what failed, as the commands would
        return [Check("tensorflow import", f"{type(error).__name__}: {error}", False,
                      hint="reinstall TensorFlow: pip install --force-reinstall tensorflow")]
    build = tf.sysconfig.get_build_info()
    cuda = bool(build.get("is_cuda_build"))
    devices = [f"{device.device_type}:{device.name.split(':')[-1]}"
               for device in tf.config.list_physical_devices()]
    gpus = [device for device in devices if device.startswith("GPU")]
    return [Check("devices", ", ".join(devices) or "none"),
            Check("cuda build", f"yes (CUDA {build.get('cuda_version', '?')})" if cuda else "no",
                  cuda or not gpus, needed=False,
                  hint="pip install 'cnnviz[gpu]' to compute on the GPU")]


def _weights_cache() -> Check:
    folder = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
    files = sorted(folder.glob("*.h5")) + sorted(folder.glob("*.keras")) if folder.is_dir() \
        else []
    found = f"{len(files)} file(s) in {folder}" if files else f"empty ({folder})"
    return Check("imagenet weights cache", found, bool(files), needed=False,
                 hint="named models download their ImageNet weights on first use: run one "
                      "once with network access, or use --weights none or FILE offline")


def _font() -> Check:
    from PIL import features

    freetype = features.check("freetype2")
    return Check("font", "Pillow with FreeType (scalable default font)" if freetype
                 else "Pillow without FreeType", freetype,
                 hint="install a Pillow built with FreeType (pip install --force-reinstall "
                      "pillow): titles and captions need scalable text")


def _temporary_folder() -> Check:
    folder = tempfile.gettempdir()
    try:
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as error:
        return Check("temporary folder", f"{folder}: {error.strerror}", False,
                     hint="set TMPDIR to a writable folder")
    return Check("temporary folder", f"{folder} (writable)")


def doctor() -> list[Check]:
    """Every check, in the order the table shows them."""
    checks = _packages()
    if version("tensorflow"):
        checks += _tensorflow()
    return [*checks, _weights_cache(), _font(), _temporary_folder()]
