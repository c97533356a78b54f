"""A small writer of TFLite flatbuffers on top of the schema's object API.

``ai_edge_litert.schema_py_generated`` (the TFLite schema, as LiteRT ships it) gives the object
classes (``ModelT``, ``SubGraphT``, ``TensorT`` ...); ``flatbuffers.Builder`` serialises them.
This module only keeps the bookkeeping: operator codes de-duplicated, buffer 0 the empty
sentinel, constants given a buffer only when an operator uses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as tfl

__all__ = ["TFLiteBuilder", "QParams", "tfl"]

_TENSOR_TYPES = {
    np.dtype(np.int8): tfl.TensorType.INT8,
    np.dtype(np.int32): tfl.TensorType.INT32,
    np.dtype(np.float32): tfl.TensorType.FLOAT32,
    np.dtype(np.uint8): tfl.TensorType.UINT8,
    np.dtype(np.int64): tfl.TensorType.INT64,
}

# Operator versions that TFLite's reference kernels accept for int8 (see TFLite's
# op versioning: int8 was introduced at these versions).
_OP_VERSIONS = {
    "CONV_2D": 3,
    "DEPTHWISE_CONV_2D": 3,
    "FULLY_CONNECTED": 4,
    "ADD": 2,
    "MUL": 2,
    "AVERAGE_POOL_2D": 2,
    "MAX_POOL_2D": 2,
    "CONCATENATION": 2,
    "RESHAPE": 1,
    "TRANSPOSE": 2,
    "SOFTMAX": 2,
    "LOGISTIC": 2,
    "TANH": 2,
    "PAD": 2,
    "MEAN": 2,
    "STRIDED_SLICE": 2,
    "RELU": 2,
    "RELU6": 2,
    "RELU_N1_TO_1": 1,  # int8 in version 1 (reference op resolver registers only 1)
    "QUANTIZE": 2,
    "ABS": 2,
    "HARD_SWISH": 1,
    # binary ops with constants, reductions (ops-binary): LiteRT's op_version.cc for int8
    "SUB": 2,  # 3 only for broadcasts of rank > 4
    "MAXIMUM": 2,
    "MINIMUM": 2,
    "REDUCE_MAX": 2,
    "REDUCE_MIN": 2,
    # ops-unary (int8 versions from LiteRT's op_version.cc; BUILTIN_REF runs them)
    "RELU_0_TO_1": 1,
    "GELU": 2,
    "LEAKY_RELU": 1,
    "PRELU": 1,
    "EXP": 2,
    "LOG": 2,
    "RSQRT": 2,
    "SQRT": 1,
    # ops-structure
    "TRANSPOSE_CONV": 3,  # int8 with the bias as input 3; 4 with a fused activation (op()'s version)
    "RESIZE_NEAREST_NEIGHBOR": 2,  # int8, align_corners and half_pixel_centers False
    "RESIZE_BILINEAR": 2,  # int8; 3 with half_pixel_centers (torch's align_corners=False: op()'s version)
    "MIRROR_PAD": 2,
    "SPLIT": 2,
    "SPLIT_V": 2,
    # attention
    "BATCH_MATMUL": 2,
}


@dataclass(frozen=True)
class QParams:
    """Quantization parameters of one tensor: per-tensor (one scale) or per-axis."""

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int = 0

    @staticmethod
    def per_tensor(scale: float, zero_point: int) -> "QParams":
        return QParams((float(scale),), (int(zero_point),))


class TFLiteBuilder:
    """Collects tensors and operators of one subgraph and serialises the model."""

    def __init__(self, description: str = "neutronq"):
        self.description = description
        self.tensors: list = []
        self.operators: list = []
        self.opcodes: list = []
        self._opcode_index: dict[tuple[int, int], int] = {}
        self.buffers: list = [tfl.BufferT()]  # buffer 0: the empty sentinel
        self.inputs: list[int] = []
        self.outputs: list[int] = []

    # --- tensors -----------------------------------------------------------------------------
    def tensor(self, shape: Sequence[int], dtype, qparams: Optional[QParams] = None,
               name: str = "", data: Optional[np.ndarray] = None) -> int:
        """Add a tensor; ``data`` makes it a constant with its own buffer. Returns its index."""
        t = tfl.TensorT()
        t.shape = [int(d) for d in shape]
        t.type = _TENSOR_TYPES[np.dtype(dtype)]
        t.name = name or f"t{len(self.tensors)}"
        t.buffer = 0
        if data is not None:
            arr = np.ascontiguousarray(np.asarray(data, dtype=dtype))
            if tuple(arr.shape) != tuple(t.shape):
                raise ValueError(f"constant {t.name}: data shape {arr.shape} != tensor shape {t.shape}")
            buf = tfl.BufferT()
            buf.data = arr.reshape(-1).view(np.uint8)
            self.buffers.append(buf)
            t.buffer = len(self.buffers) - 1
        if qparams is not None:
            q = tfl.QuantizationParametersT()
            q.scale = [float(s) for s in qparams.scale]
            q.zeroPoint = [int(z) for z in qparams.zero_point]
            q.quantizedDimension = int(qparams.axis)
            t.quantization = q
        self.tensors.append(t)
        return len(self.tensors) - 1

    def const_int32(self, values, name: str = "") -> int:
        arr = np.asarray(values, dtype=np.int32)
        return self.tensor(arr.shape, np.int32, None, name, arr)

    def shape_of(self, index: int) -> tuple[int, ...]:
        return tuple(self.tensors[index].shape)

    def qparams_of(self, index: int) -> Optional[QParams]:
        q = self.tensors[index].quantization
        if q is None:
            return None
        return QParams(tuple(q.scale), tuple(q.zeroPoint), q.quantizedDimension)

    # --- operators ---------------------------------------------------------------------------
    def _opcode(self, name: str, version: Optional[int] = None) -> int:
        code = getattr(tfl.BuiltinOperator, name)
        version = _OP_VERSIONS.get(name, 1) if version is None else int(version)
        if (code, version) not in self._opcode_index:
            oc = tfl.OperatorCodeT()
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, 127)  # the schema's legacy int8 field
            oc.version = version
            self.opcodes.append(oc)
            self._opcode_index[(code, version)] = len(self.opcodes) - 1
        return self._opcode_index[(code, version)]

    def op(self, name: str, inputs: Sequence[int], outputs: Sequence[int],
           options=None, options_type: Optional[str] = None, version: Optional[int] = None) -> None:
        """Add builtin operator ``name`` (a ``tfl.BuiltinOperator`` member name); ``version``
        overrides ``_OP_VERSIONS`` where an option raises it (TRANSPOSE_CONV with an activation)."""
        o = tfl.OperatorT()
        o.opcodeIndex = self._opcode(name, version)
        o.inputs = [int(i) for i in inputs]
        o.outputs = [int(i) for i in outputs]
        if options is not None:
            o.builtinOptionsType = getattr(tfl.BuiltinOptions, options_type or type(options).__name__[:-1])
            o.builtinOptions = options
        self.operators.append(o)

    # --- model ---------------------------------------------------------------------------------
    def finish(self) -> bytes:
        self._check_buffers_used()
        sg = tfl.SubGraphT()
        sg.tensors = self.tensors
        sg.inputs = list(self.inputs)
        sg.outputs = list(self.outputs)
        sg.operators = self.operators
        sg.name = "main"
        model = tfl.ModelT()
        model.version = 3
        model.operatorCodes = self.opcodes
        model.subgraphs = [sg]
        model.description = self.description
        model.buffers = self.buffers
        builder = flatbuffers.Builder(1024 + sum(len(b.data) for b in self.buffers if b.data is not None))
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())

    def _check_buffers_used(self) -> None:
        used = {i for o in self.operators for i in o.inputs}
        for i, t in enumerate(self.tensors):
            if t.buffer != 0 and i not in used:
                raise AssertionError(f"internal error: constant tensor {t.name} is used by no operator")
