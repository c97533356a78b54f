"""The parts every op emulation shares: the parsed tensors and operators, the op registry, and the
batch convention.

Batch convention: at run time every non-constant tensor carries one extra leading axis, the
sample axis ``S``: a value of TFLite shape ``shape`` is a tensor of shape ``[S, *shape]``, sample
``s`` being what LiteRT computes for the model's own input ``s``. Constants keep their TFLite
shape. An op emulation receives its non-constant inputs in that form and returns its outputs in
it; most flatten ``S`` into the model's own leading dim (``flat``) and restore it (``unflat``),
which is free for contiguous tensors. Ops that act on the model's dim 0 itself (a TRANSPOSE
moving it, a reduction or concatenation over it, a RESHAPE folding it) act on axis 1 and stay
batched; an emulation that cannot take the sample axis sets ``per_sample = True`` and
``TFLiteModule`` runs it one sample at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
from ai_edge_litert import schema_py_generated as tfl

from neutronq.runtime.emulate.fixedpoint import quantize_float_f32

__all__ = [
    "EmulationError",
    "TensorInfo",
    "OpInfo",
    "EmulatedOp",
    "OPS",
    "register",
    "activation_range",
    "flat",
    "unflat",
    "with_sample_axis",
]

OP_NAMES = {v: k for k, v in vars(tfl.BuiltinOperator).items() if not k.startswith("_")}
_TYPES = {
    tfl.TensorType.INT8: (torch.int8, np.int8),
    tfl.TensorType.UINT8: (torch.uint8, np.uint8),
    tfl.TensorType.INT16: (torch.int16, np.int16),
    tfl.TensorType.INT32: (torch.int32, np.int32),
    tfl.TensorType.INT64: (torch.int64, np.int64),
    tfl.TensorType.FLOAT32: (torch.float32, np.float32),
    tfl.TensorType.BOOL: (torch.bool, np.bool_),
}
_TYPE_NAMES = {v: k for k, v in vars(tfl.TensorType).items() if not k.startswith("_")}


class EmulationError(RuntimeError):
    """The TFLite model uses something the emulation does not implement (an op, a type, an
    option), or a run was given tensors the model cannot take."""


@dataclass
class TensorInfo:
    """One tensor of the TFLite subgraph."""

    index: int
    name: str
    shape: tuple[int, ...]
    type_name: str
    dtype: Optional[torch.dtype]
    scales: Optional[np.ndarray] = None  # float32, as stored
    zero_points: Optional[np.ndarray] = None  # int64
    quantized_dimension: int = 0
    data: Optional[np.ndarray] = None  # constants: the values, in ``shape``

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def scale(self) -> np.float32:
        """The per-tensor scale as a C++ float (the first one of a per-axis tensor)."""
        if self.scales is None or len(self.scales) == 0:
            raise EmulationError(f"tensor '{self.name}' has no quantization scale")
        return np.float32(self.scales[0])

    @property
    def zero_point(self) -> int:
        if self.zero_points is None or len(self.zero_points) == 0:
            return 0
        return int(self.zero_points[0])

    @property
    def rank(self) -> int:
        return len(self.shape)

    def describe(self) -> str:
        return f"tensor {self.index} '{self.name}' ({self.type_name}{list(self.shape)})"


@dataclass
class OpInfo:
    """One operator: its builtin name, options and tensors (``None`` for an omitted input)."""

    index: int
    name: str
    version: int
    options: object
    inputs: list
    outputs: list
    extra: dict = field(default_factory=dict)

    def where(self) -> str:
        out = self.outputs[0].describe() if self.outputs else "no output"
        return f"{self.name} (operator {self.index}, output {out})"

    def fail(self, why: str) -> "EmulationError":
        return EmulationError(f"{self.where()}: {why}")

    def option(self, name: str, default=None):
        return getattr(self.options, name, default) if self.options is not None else default

    def require_int8(self, *tensors: TensorInfo) -> None:
        for t in tensors or [*self.inputs[:1], *self.outputs]:
            if t is not None and t.dtype != torch.int8:
                raise self.fail(f"{t.describe()} is not int8; only int8 is emulated for this op")


class EmulatedOp(torch.nn.Module):
    """An op's emulation: ``forward`` takes the op's non-constant inputs (``[S, *shape]``) in
    operator order and returns a tuple of outputs."""

    def __init__(self, op: OpInfo):
        super().__init__()
        self.op_index = op.index
        self.op_name = op.name
        self.input_ids = [t.index if t is not None else -1 for t in op.inputs]
        self.dynamic_inputs = [t.index for t in op.inputs if t is not None and not t.is_const]
        self.output_ids = [t.index for t in op.outputs]

    def extra_repr(self) -> str:
        return f"{self.op_name} #{self.op_index}"


Builder = Callable[[OpInfo], EmulatedOp]
OPS: dict[str, Builder] = {}


def register(*names: str):
    """Register a builder ``OpInfo -> EmulatedOp`` for TFLite builtin op ``names``."""

    def deco(fn: Builder) -> Builder:
        for n in names:
            OPS[n] = fn
        return fn

    return deco


def activation_range(op: OpInfo, out: TensorInfo, activation: Optional[int] = None) -> tuple[int, int]:
    """``CalculateActivationRangeQuantized``: the int8 clamp of a fused activation, its bounds
    quantized as ``zp + roundf(f / scale)`` in float arithmetic."""
    if activation is None:
        activation = op.option("fusedActivationFunction", tfl.ActivationFunctionType.NONE)
    lo, hi = -128, 127
    if out.dtype == torch.int16:
        lo, hi = -32768, 32767
    scale, zp = out.scale, out.zero_point
    A = tfl.ActivationFunctionType
    if activation == A.RELU:
        lo = max(lo, quantize_float_f32(0.0, scale, zp))
    elif activation == A.RELU6:
        lo = max(lo, quantize_float_f32(0.0, scale, zp))
        hi = min(hi, quantize_float_f32(6.0, scale, zp))
    elif activation == A.RELU_N1_TO_1:
        lo = max(lo, quantize_float_f32(-1.0, scale, zp))
        hi = min(hi, quantize_float_f32(1.0, scale, zp))
    elif activation != A.NONE:
        raise op.fail(f"fused activation {activation} is not emulated")
    return lo, hi


def flat(x: torch.Tensor) -> torch.Tensor:
    """``[S, d0, ...]`` -> ``[S * d0, ...]`` (a rank-0 TFLite tensor stays ``[S]``)."""
    if x.dim() <= 1:
        return x
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def unflat(y: torch.Tensor, samples: int) -> torch.Tensor:
    """``[S * d0, ...]`` -> ``[S, d0, ...]``."""
    return y.reshape(samples, y.shape[0] // samples, *y.shape[1:])


def with_sample_axis(x: torch.Tensor, rank: int) -> torch.Tensor:
    """A ``[S, *shape]`` value with 1s inserted after the sample axis up to TFLite rank ``rank``
    (numpy broadcasting of operands of different ranks aligns them from the right)."""
    missing = rank - (x.dim() - 1)
    if missing <= 0:
        return x
    return x.reshape(x.shape[0], *([1] * missing), *x.shape[1:])


def tensor_type(type_code: int):
    return _TYPES.get(type_code, (None, None)), _TYPE_NAMES.get(type_code, str(type_code))
