"""Which commands and cam methods can run on a model: what each needs of the model (its layers,
input gradients or scores only) against what the model's format gives (`ResolvedModel.gives`).
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING

from cnnviz_cli.errors import CnnvizError

if TYPE_CHECKING:
    from cnnviz_cli.models.resolve import ResolvedModel

LAYER_COMMANDS = ("activations", "filters", "maximize", "dream", "reconstruct")
"""The commands that need the model's layers (maximize of classes only input gradients)."""


def usable_methods(resolved: "ResolvedModel") -> list[str]:
    """The cam methods that can run on the ResolvedModel `resolved`, in registry order."""
    from cnnviz_cli.techniques.cam import methods

    return [name for name, method in methods().items() if method.needs in resolved.gives]


def check_methods(resolved: "ResolvedModel", methods: Sequence[str]) -> None:
    """Refuse, in one sentence, the cam `methods` that the model's format cannot run."""
    usable = usable_methods(resolved)
    refused = [method for method in methods if method not in usable]
    if refused:
        raise CnnvizError(
            f"{_listed(refused)} cannot run on {_model(resolved)}: {_listed(usable)} work "
            "here, and a .keras file of the model gives every method.")


def check_command(resolved: "ResolvedModel", command: str, settings: dict | None = None) -> None:
    """Refuse, in one sentence, a command (with its `settings`) that needs more of the model
    than its format gives: layers, or input gradients to maximise classes."""
    settings = settings or {}
    classes = command == "maximize" and bool(settings.get("classes")) and not settings.get(
        "from_images")
    need = "gradient" if classes else "layer" if command in LAYER_COMMANDS else "forward"
    if need in resolved.gives:
        return
    also = ", as does maximize --class" if "gradient" in resolved.gives else ""
    raise CnnvizError(
        f"cnnviz {command}{' --class' if classes else ''} needs the model's "
        f"{'input gradients' if classes else 'layers'}, and {_model(resolved)}: cnnviz cam "
        f"--method {_listed(usable_methods(resolved))} work here{also}, and a .keras file of "
        "the model gives every command.")


def _model(resolved: "ResolvedModel") -> str:
    """`the ONNX model m.onnx, which gives scores only (...)`."""
    from cnnviz_cli.models.formats import FORMAT_NAMES

    reason = resolved.details.get("untranslated")  # an ONNX graph the translation lacks ops for
    gives = ("gives input gradients but no layers" if "gradient" in resolved.gives
             else f"gives scores only (no layers or gradients{f'; {reason}' if reason else ''})")
    return f"the {FORMAT_NAMES[resolved.format]} {resolved.source}, which {gives}"


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
