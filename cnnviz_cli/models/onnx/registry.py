"""The op registry: ONNX op type -> function(builder, node) -> output values."""

from collections.abc import Callable

OPS: dict[str, Callable] = {}


def op(*op_types: str) -> Callable:
    """Register the decorated function as the translation of `op_types`."""

    def register(function: Callable) -> Callable:
        for op_type in op_types:
            OPS[op_type] = function
        return function

    return register
