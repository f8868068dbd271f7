"""Where a run computes: device choice, polite GPU memory, and mixed precision.

TensorFlow fixes its devices at its first operation, so `configure` runs before a model is
built or loaded. It shows TensorFlow only the chosen GPU (or none for `cpu`), lets GPU memory
grow on demand (or caps it), and returns the device to place the work on.
"""

import re
from dataclasses import dataclass

from cnnviz_cli.errors import CnnvizError

DEVICES = "auto, cpu, gpu or gpu:N"
PRECISIONS = ("float32", "mixed")
_GPU_INSTALL = "install the GPU build with `pip install cnnviz[gpu]` on a machine with a CUDA GPU"


@dataclass(frozen=True)
class Runtime:
    """The device a run computes on, as the manifest records it."""

    device: str  # a TensorFlow device name, /CPU:0 or /GPU:0
    device_name: str  # what the hardware calls itself
    precision: str  # float32, or the mixed policy used (mixed_float16, mixed_bfloat16)
    gpu_memory: int | None = None  # a cap in MB; None: memory grows on demand
    requested: str = "auto"  # the device as asked for (auto, cpu, gpu, gpu:N)

    def words(self) -> dict:
        """The options that ask for this runtime, as the command line gives them."""
        words = {} if self.requested == "auto" else {"device": self.requested}
        if self.gpu_memory is not None:
            words["gpu_memory"] = self.gpu_memory
        if self.precision != "float32":
            words["precision"] = "mixed"
        return words

    def describe(self) -> dict:
        import tensorflow as tf

        return {"device": self.device, "requested": self.requested,
                "device_name": self.device_name,
                "precision": self.precision, "gpu_memory_mb": self.gpu_memory,
                "tensorflow": tf.__version__}


_configured: dict = {}  # the process's device settings once TensorFlow has them


def parse_device(device: str) -> int | None:
    """`auto`/`gpu` -> 0 (the first GPU), `gpu:N` -> N, `cpu` -> None; refuses other words."""
    text = str(device).strip().lower()
    if text == "cpu":
        return None
    if text in ("auto", "gpu"):
        return 0
    match = re.fullmatch(r"gpu:(\d+)", text)
    if match is None:
        raise CnnvizError(f"--device must be {DEVICES}, not {device!r}.")
    return int(match[1])


def configure(device: str = "auto", gpu_memory: int | None = None,
              precision: str = "float32") -> Runtime:
    """Set TensorFlow's devices for this process (before its first operation) and say where
    the work runs; a GPU that is not there, or a setting that cannot apply, is one sentence."""
    from cnnviz_cli.quiet_tf import import_tensorflow

    import_tensorflow()
    import tensorflow as tf

    if precision not in PRECISIONS:
        raise CnnvizError(f"--precision must be {' or '.join(PRECISIONS)}, not {precision!r}.")
    if gpu_memory is not None and gpu_memory < 1:
        raise CnnvizError(f"--gpu-memory is a number of megabytes (1 or more), not {gpu_memory}.")
    index = parse_device(device)
    gpus = tf.config.list_physical_devices("GPU")
    wants_gpu = str(device).strip().lower() != "auto" and index is not None
    if wants_gpu and index >= len(gpus):
        seen = f"sees {len(gpus)} GPU(s) (gpu:0 to gpu:{len(gpus) - 1})" if gpus else \
            f"sees no GPU; {_GPU_INSTALL}"
        raise CnnvizError(f"--device {device} asks for GPU {index}, but TensorFlow {seen}.")
    chosen = gpus[index] if index is not None and index < len(gpus) else None
    if chosen is None and gpu_memory is not None:
        raise CnnvizError("--gpu-memory applies only when the work runs on a GPU, and this run "
                          "uses the CPU; leave it out.")
    if chosen is None and precision == "mixed":
        raise CnnvizError("--precision mixed needs a GPU: on the CPU float16 is slower than "
                          "float32; leave it out, or run with --device gpu.")
    placed = _set_devices(tf, chosen, index, gpu_memory)
    details = tf.config.experimental.get_device_details(chosen) if chosen is not None else {}
    return Runtime(
        device=placed,
        device_name=details.get("device_name", "GPU") if chosen is not None else _cpu_name(),
        precision=mixed_policy(details.get("compute_capability")) if precision == "mixed"
        else "float32",
        gpu_memory=gpu_memory,
        requested=str(device).strip().lower(),
    )


def _set_devices(tf, chosen, index: int | None, gpu_memory: int | None) -> str:
    """Show TensorFlow only `chosen` (a GPU, or None for the CPU) with its memory policy, and
    return the device name to place work on. Once per process: TensorFlow refuses changes
    after its first operation, and then the GPUs keep their own numbers."""
    wanted = (None if chosen is None else chosen.name, gpu_memory)
    if _configured.get("devices", wanted) != wanted:
        raise CnnvizError("The device or --gpu-memory changed within one process; TensorFlow "
                          "fixes them at its first operation, so start a new process.")
    if "devices" not in _configured:
        _configured["placed"] = "/CPU:0" if chosen is None else "/GPU:0"
        try:
            tf.config.set_visible_devices([] if chosen is None else [chosen], "GPU")
            if chosen is not None and gpu_memory is None:
                tf.config.experimental.set_memory_growth(chosen, True)
            elif chosen is not None:
                tf.config.set_logical_device_configuration(
                    chosen, [tf.config.LogicalDeviceConfiguration(memory_limit=gpu_memory)])
        except RuntimeError:  # TensorFlow ran an operation already (e.g. in a notebook)
            if gpu_memory is not None:
                raise CnnvizError(
                    "TensorFlow is already running, so --gpu-memory can no longer be set; "
                    "set it before building any model (or in a new process)."
                ) from None
            _configured["placed"] = "/CPU:0" if chosen is None else f"/GPU:{index}"
        _configured["devices"] = wanted
    return _configured["placed"]


def mixed_policy(compute_capability: tuple[int, int] | None) -> str:
    """The Keras mixed policy a GPU runs fast: bfloat16 from compute capability 8.0 (its range
    keeps small gradients), float16 on 7.x, refused on older GPUs without fast float16."""
    if compute_capability is None or tuple(compute_capability) >= (8, 0):
        return "mixed_bfloat16"
    if tuple(compute_capability) >= (7, 0):
        return "mixed_float16"
    major, minor = compute_capability
    raise CnnvizError(f"--precision mixed needs a GPU of compute capability 7.0 or higher for "
                      f"fast float16, and this one has {major}.{minor}; leave it out.")


def with_precision(model, policy: str):
    """A copy of `model` whose layers compute in `policy` (weights shared by value; the
    model given is not changed); float32 returns the model itself."""
    if policy == "float32":
        return model
    import keras

    def clone(layer):
        config = layer.get_config()
        if "dtype" in config:
            config["dtype"] = policy
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    copy.set_weights(model.get_weights())
    return copy


def _cpu_name() -> str:
    """The processor's model name (Linux), else its architecture."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"
