"""The option groups every command shares: inputs and run, model, output (see options.Table).

Each command's table lists these beside its own options; the command line, the API keywords
and the recorded command line come from them.
"""

import re
from pathlib import Path

from cnnviz_cli.errors import CnnvizError
from cnnviz_cli.io import DEFAULT_MAX_PIXELS
from cnnviz_cli.options import Option

INPUTS = "Inputs and run"
MODEL = "Model"
OUTPUT = "Output"
RESIZE_MODES = ("stretch", "pad", "crop")  # see models.geometry.fit
MIN_SIDE = 8  # the smallest --size side


def integer_pair(value, separator: str) -> tuple[int, int] | None:
    """`A<separator>B` (or an (A, B) pair) -> (A, B); None when the text is not that."""
    if isinstance(value, tuple | list):
        return int(value[0]), int(value[1])
    match = re.fullmatch(rf"\s*(\d+)\s*{re.escape(separator)}\s*(\d+)\s*", str(value))
    return None if match is None else (int(match[1]), int(match[2]))


def parse_shard(value) -> tuple[int, int] | None:
    """`K/N` (or a (K, N) pair) -> (K, N) with 1 <= K <= N."""
    shard = None if value is None else integer_pair(value, "/")
    if value is not None and (shard is None or not 1 <= shard[0] <= shard[1]):
        raise CnnvizError(f"--shard expects K/N with 1 <= K <= N, such as 2/8, but got "
                          f"{value!r}.")
    return shard


def parse_size(value) -> int | tuple[int, int] | str | None:
    """`N`, `HxW` or `native` (or an int, a pair, None) -> the settled --size."""
    if value is None or value == "native":
        return value
    if isinstance(value, tuple | list) and len(value) == 2:
        height, width = (int(side) for side in value)
    elif isinstance(value, int) and not isinstance(value, bool):
        height = width = value
    else:
        text = str(value).strip().lower()
        if text == "native":
            return text
        match = re.fullmatch(r"(\d+)(?:\s*x\s*(\d+))?", text)
        if not match:
            raise CnnvizError(f"--size expects N, HxW (such as 48x192) or native, but got "
                              f"{value!r}.")
        height, width = int(match[1]), int(match[2] or match[1])
    if min(height, width) < MIN_SIDE:
        raise CnnvizError(f"--size {size_text(value)} is too small: each side must be at least "
                          f"{MIN_SIDE} pixels.")
    return height if height == width and not isinstance(value, tuple | list) else (height, width)


def size_text(size: int | tuple[int, int] | str | None) -> str:
    """How the recorded command line writes a settled --size."""
    return f"{size[0]}x{size[1]}" if isinstance(size, tuple | list) else str(size)


def _path_text(value) -> str:
    return str(value)


def _filter_ranges(values) -> list[str]:
    """Repeated `--filter` values (or a list of indices) -> their comma parts, grammar checked;
    they add up: `--filter 1 --filter 5-9` = `--filter 1,5-9`."""
    from cnnviz_cli.specs import filter_ranges

    parts = [part.strip() for value in values for part in str(value).split(",")]
    if parts:
        filter_ranges(",".join(parts))
    return parts


def filter_option(help_text: str, group: str, **rules) -> Option:
    """`--filter SPEC`, repeatable (`filters`: the spec is `filter_spec(settings)`)."""
    from cnnviz_cli.specs import FILTER_GRAMMAR

    return Option("filters", (), f"{help_text} SPEC is {FILTER_GRAMMAR}.", multiple=True,
                  flag="--filter", metavar="SPEC", group=group, settle=_filter_ranges, **rules)


def filter_spec(settings: dict) -> str | None:
    """The filters of settled `settings` as one spec (None: the default)."""
    return ",".join(settings["filters"]) or None


IMAGES = Option("images", (), "Image files, folders (recursive) or globs.", Path, multiple=True,
                argument=True, group=INPUTS, metavar="IMAGES...")

RUN = (
    Option("size", None, "Input size: N (a square), HxW (such as 48x192), or native (each image "
           "at its own size) [default: a fixed-size model's size; else the image's aspect ratio, "
           "longer side at the model's usual size].", group=INPUTS, metavar="N|HxW|native",
           settle=parse_size, text=size_text, show_default=False),
    Option("resize", "stretch", "How an image of another aspect ratio gets a fixed size: "
           "stretch it, pad it (letterbox) or crop its centre; maps are drawn back onto the "
           "original.", RESIZE_MODES, group=INPUTS),
    Option("batch_size", 8, "Images per compiled pass.", int, low=1, group=INPUTS),
    Option("max_pixels", DEFAULT_MAX_PIXELS, "Refuse images that declare more pixels than this "
           "(decompression bombs), and a --size that makes larger inputs.", int, low=1,
           group=INPUTS),
    Option("skip_existing", False, "Resume: leave out images an earlier run into --out finished "
           "(same options).", bool, group=INPUTS, recorded=False),
    Option("fail_fast", False, "Stop at the first unreadable image [default: go on, list "
           "failures, exit 1].", bool, group=INPUTS),
    Option("shard", None, "Process only slice K of N (1 <= K <= N) of the sorted images, e.g. a "
           "job-array index; merge the shards' folders with `cnnviz report`.", str,
           metavar="K/N", group=INPUTS, settle=parse_shard,
           text=lambda shard: f"{shard[0]}/{shard[1]}", show_default=False),
)
"""The run-loop options of a command over images (session.Session.batches reads them)."""

CHECKPOINTS = Option(
    "checkpoints", (), "A model or weights file saved during training; repeat in training "
    "order to draw one row per checkpoint and an animated GIF.", Path, multiple=True,
    flag="--checkpoint", metavar="FILE", group=INPUTS, text=_path_text)

MODEL_OPTIONS = (
    Option("model", "demo", "A keras.applications name (see `cnnviz models`), a .keras/.h5 "
           "file, a SavedModel folder, a .tflite or .onnx file, or `demo`.", short="-m",
           metavar="NAME|FILE", group=MODEL),
    Option("weights", None, "imagenet (the default) or none for a named model; a weights file "
           "for any model (demo, name or file).", metavar="imagenet|none|FILE", group=MODEL,
           show_default=False),
    Option("preprocess", None, "Input preprocessing for a model file: none, unit (x/255), "
           "symmetric (x/127.5-1), caffe, torch, or a model name such as resnet50.",
           metavar="NAME", group=MODEL, show_default=False),
    Option("labels", None, "Class names: text (one a line) or JSON.", Path, metavar="FILE",
           group=MODEL, show_default=False),
    Option("unsafe_deserialization", False, "Allow model files with Lambda layers (runs the "
           "code inside them: trusted files only).", bool, group=MODEL),
    Option("custom_objects", (), "Import this Python file or module before loading a model "
           "file, for its custom layers and classes; this RUNS its code (trusted code only). "
           "Repeatable.", multiple=True, metavar="FILE.py|MODULE", group=MODEL),
    Option("signature", None, "The function of a SavedModel folder that is the model "
           "[default: serving_default].", metavar="NAME", group=MODEL, show_default=False),
    Option("image_input", None, "The input of a model with several inputs that takes the "
           "images [default: the one shaped like images].", metavar="NAME", group=MODEL,
           show_default=False),
    Option("inputs", (), "Hold a model's other input NAME at these values (or the array in "
           "FILE.npy) for every image; gradients are taken w.r.t. the image only. Repeatable.",
           multiple=True, flag="--input", metavar="NAME=VALUE[,VALUE...]|NAME=FILE.npy",
           group=MODEL),
    Option("device", "auto", "Where to compute: auto = the first GPU TensorFlow sees, else the "
           "CPU.", metavar="auto|cpu|gpu|gpu:N", group=MODEL),
    Option("gpu_memory", None, "Cap the GPU memory this run takes [default: grow on demand, so "
           "a training job can share the GPU].", int, low=1, metavar="MB", group=MODEL,
           show_default=False),
    Option("precision", "float32", "mixed: the model computes in float16/bfloat16 (GPU only); "
           "scores, gradients and maps stay float32.", ("float32", "mixed"), group=MODEL),
)
"""How the model is loaded (api.models.load_model's keywords); recorded from the model."""

OUTPUT_OPTIONS = (
    Option("out", None, "Output folder, not an input folder or inside one [default: "
           "cnnviz-out/COMMAND].", Path, short="-o", group=OUTPUT, recorded=False,
           show_default=False),
    Option("tensorboard", None, "Also write the pictures and numbers as TensorBoard summaries "
           "into LOGDIR (step: the --checkpoint index, else 0); view with `tensorboard "
           "--logdir LOGDIR`.", Path, metavar="LOGDIR", group=OUTPUT, recorded=False,
           show_default=False),
    Option("force", False, "Replace the outputs of an earlier run with another command or "
           "options in --out [default: refuse such a folder].", bool, group=OUTPUT,
           recorded=False),
)
"""Where the files go (the command line adds --json and --quiet, which only print)."""


def model_keywords(settings: dict) -> dict:
    """The `load_model` keywords among a run's settings."""
    return {option.name: settings[option.name] for option in MODEL_OPTIONS
            if option.name != "model" and option.name in settings}
