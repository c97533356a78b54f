"""The input signature of a lowered program, and the check every call goes through."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

__all__ = ["InputSpec", "Signature", "SignatureError"]


class SignatureError(ValueError):
    """The inputs given to a lowered program do not match the inputs it was exported with."""


@dataclass(frozen=True)
class InputSpec:
    """One positional input: a tensor (``dtype`` and ``shape`` set) or a plain value (``kind``)."""

    name: str
    dtype: Optional[torch.dtype] = None
    shape: Optional[tuple[int, ...]] = None
    kind: Optional[str] = None  # "int", "float", "bool", ... for non-tensor inputs

    def __str__(self) -> str:
        if self.dtype is not None:
            return f"{self.name}: {str(self.dtype).replace('torch.', '')}{list(self.shape)}"
        return f"{self.name}: {self.kind}"


@dataclass(frozen=True)
class Signature:
    """What a lowered program takes: its method name and positional inputs, shapes fixed at export."""

    method: str
    inputs: tuple[InputSpec, ...]

    def __str__(self) -> str:
        return f"{self.method}({', '.join(str(i) for i in self.inputs)})"

    @property
    def batch_size(self) -> Optional[int]:
        """The leading dimension shared by every tensor input, or None when they disagree."""
        sizes = {i.shape[0] for i in self.inputs if i.shape}
        return sizes.pop() if len(sizes) == 1 else None

    def check(self, inputs: Sequence) -> None:
        """Raise ``SignatureError`` naming this signature when ``inputs`` do not fit it."""
        if len(inputs) != len(self.inputs):
            raise SignatureError(
                f"The program takes {len(self.inputs)} input(s), got {len(inputs)}. "
                f"Expected signature: {self}"
            )
        for position, (spec, value) in enumerate(zip(self.inputs, inputs)):
            if spec.dtype is None:
                continue
            if not isinstance(value, torch.Tensor):
                raise SignatureError(
                    f"Input {position} ({spec.name}) must be a tensor, got {type(value).__name__}. "
                    f"Expected signature: {self}"
                )
            if value.dtype != spec.dtype:
                raise SignatureError(
                    f"Input {position} ({spec.name}) has dtype {value.dtype}, the program was "
                    f"exported with {spec.dtype}. Expected signature: {self}"
                )
            if tuple(value.shape) != spec.shape:
                hint = ""
                if value.dim() == len(spec.shape) and value.shape[1:] == torch.Size(spec.shape[1:]):
                    hint = (" The program was exported with a fixed batch of "
                            f"{spec.shape[0]}: run samples one by one (neutronq.runtime.evaluate "
                            "does it) or export with that batch size.")
                raise SignatureError(
                    f"Input {position} ({spec.name}) has shape {list(value.shape)}, the program "
                    f"was exported with {list(spec.shape)}.{hint} Expected signature: {self}"
                )
