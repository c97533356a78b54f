"""Will it fit, and how fast at best? Memory and a compute floor of a lowered program, per target.

Everything here is computed on the host from what lowering produced; nothing runs on a board.

What is counted
===============

**Weights of a partition** (``tflite_weight_bytes``): the bytes of every *constant* tensor of the
partition's int8 TFLite model (a tensor whose buffer holds data: int8 weights, int32 biases,
int32 shape operands of RESHAPE, any other constant), each buffer once even when tensors share
it, plus the quantization parameters as the TFLite schema stores them: ``scale`` float32 (4 bytes
each), ``zero_point`` int64 (8 bytes each), ``min``/``max`` float32 when present. These are what
the flatbuffer holds; the flatbuffer's own tables (tensor names, shapes, operator records) are not
counted. NXP's converter rewrites weights into its own layout; its byte count may differ.

**Activation arena of a partition** (``tflite_arena_plan``): every non-constant tensor of the
subgraph, in operator execution order (the order of ``subgraph.operators``), is alive

  * from the operator that produces it, or from before the first operator for a graph input;
  * to the last operator that reads it, or to after the last operator for a graph output.

A tensor takes ``prod(shape) x element size`` bytes. RESHAPE outputs are new tensors in TFLite
(the output of RESHAPE has its own tensor and, in this count, its own bytes): no aliasing of
in-place ops is assumed, which TFLite's own planner can do for some ops, so this is the arena of an
allocator without in-place sharing. Two numbers come out:

  * ``peak_bytes``: the largest sum of live tensor bytes at one operator: the lower bound any
    allocator that keeps each tensor in one place needs; ``peak_op`` is where it happens;
  * ``greedy_bytes``: the size of an actual offset assignment: tensors sorted by size (largest
    first), each put at the lowest offset where it overlaps no already-placed tensor alive at the
    same time (first fit, in the manner of TFLite Micro's greedy memory planner), with each offset
    aligned to ``alignment`` bytes (16 by default, as TFLite Micro and ExecuTorch's Neutron
    runtime align). ``greedy_bytes >= peak_bytes`` always.

**A lowered program** (``program_memory``): the ``.pte`` is read with ExecuTorch's own
``deserialize_pte_binary``:

  * the CPU part's *planned activation memory* is ``execution_plan[i].non_const_buffer_sizes``
    (entry 0 is reserved by ExecuTorch and is 0; the rest are the memory-planned arenas). The
    delegate calls' inputs and outputs are values of that plan with their own offsets in those
    arenas: **each partition's graph inputs and outputs live in the CPU arena**, not in the
    partition's;
  * the CPU part's constants are the program's ``constant_buffer`` (plus named data and mutable
    data segments when present);
  * each delegate with backend id ``"NeutronBackend"`` whose payload is neutronq's TFLite payload
    gets its weights and arena plan; other payloads (NXP converter output, other backends) are
    counted by size only.

**Peak activation memory of the program** = CPU planned arena + the largest per-partition
temporary need, because:

  * ExecuTorch runs a method's instructions one after another (one chain), so partitions run one
    at a time and never overlap;
  * ExecuTorch's Neutron runtime (``backends/nxp/runtime/NeutronBackend.cpp``) takes a partition's
    scratch, and the channels-last copies of its inputs/outputs, from the temporary allocator
    inside ``execute``, which is reset after each instruction;
  * the CPU arena is one static allocation that exists the whole time.

A partition's temporary need is counted as its arena *without* its graph inputs and outputs
(those are already in the CPU arena) plus one copy (16-byte aligned) of every input and output
whose layout flag asks for a channels-last transpose with more than one channel, as that runtime
allocates. The scratch the NXP converter really reserves is decided by that converter (it fuses
and tiles); the TFLite plan is the unfused reference.

Not counted anywhere: code (ExecuTorch runtime, kernels, Neutron firmware / microcode), the
method allocator's bookkeeping (EValues, instruction tables), stacks, heaps, and for targets
whose NPU prefetches weights into SRAM (``fetch_constants_to_sram``) the prefetch scratch.

The compute floor
=================

``compute_floor`` divides multiply-accumulates by the NPU's peak MAC rate: MACs/cycle x clock,
or the published TOPS / 2 when only that is published. It is a *floor*: 100 % MAC utilisation,
no memory stalls, no data movement, no CPU part. Real inference is slower.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional, Union

import numpy as np
from ai_edge_litert import schema_py_generated as tfl

from neutronq.backend import NEUTRON_BACKEND_ID
from neutronq.backend.neutron_target_spec import KNOWN_TARGETS, NeutronTargetSpec, TargetInfo
from neutronq.lowering.payload import PayloadError, decode_payload

__all__ = [
    "ConstantTensor",
    "TFLiteWeights",
    "TensorLife",
    "ArenaPlan",
    "OpMacs",
    "PartitionMemory",
    "ProgramMemory",
    "MemoryNeed",
    "OpFloor",
    "ComputeFloor",
    "FitCheck",
    "FitReport",
    "tflite_weight_bytes",
    "tflite_arena_plan",
    "tflite_macs",
    "program_memory",
    "compute_floor",
    "fits",
]

DEFAULT_ALIGNMENT = 16

# bytes per element of each TFLite tensor type (sub-byte types rounded per element below)
_ELEMENT_BITS = {
    tfl.TensorType.FLOAT32: 32, tfl.TensorType.FLOAT16: 16, tfl.TensorType.INT32: 32,
    tfl.TensorType.UINT8: 8, tfl.TensorType.INT64: 64, tfl.TensorType.BOOL: 8,
    tfl.TensorType.INT16: 16, tfl.TensorType.COMPLEX64: 64, tfl.TensorType.INT8: 8,
    tfl.TensorType.FLOAT64: 64, tfl.TensorType.COMPLEX128: 128, tfl.TensorType.UINT64: 64,
    tfl.TensorType.UINT32: 32, tfl.TensorType.UINT16: 16,
}
for _name, _bits in (("INT4", 4), ("UINT4", 4), ("INT2", 2), ("BFLOAT16", 16),
                     ("FLOAT8_E4M3FN", 8), ("FLOAT8_E5M2", 8)):
    if hasattr(tfl.TensorType, _name):
        _ELEMENT_BITS[getattr(tfl.TensorType, _name)] = _bits
_TYPE_NAMES = {v: k for k, v in vars(tfl.TensorType).items() if not k.startswith("_")}
_OP_NAMES = {v: k for k, v in vars(tfl.BuiltinOperator).items() if not k.startswith("_")}

# quantization parameters as the schema stores them
_SCALE_BYTES = 4  # float32
_ZERO_POINT_BYTES = 8  # int64
_MIN_MAX_BYTES = 4  # float32


# ----------------------------------------------------------------------------------------------
# reading a TFLite flatbuffer
# ----------------------------------------------------------------------------------------------
def _model(tflite: Union[bytes, bytearray, memoryview]) -> "tfl.ModelT":
    data = bytes(tflite)
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ValueError("Not a TFLite flatbuffer (no 'TFL3' identifier at bytes 4..8).")
    return tfl.ModelT.InitFromPackedBuf(data, 0)


def _buffer_bytes(buf) -> int:
    """Bytes of one buffer: inline data, or (for models over 2 GB) data stored after the
    flatbuffer at ``offset``/``size`` (offset > 1 marks it)."""
    if buf is None:
        return 0
    if buf.data is not None and len(buf.data) > 0:
        return int(len(buf.data))
    if (buf.offset or 0) > 1:
        return int(buf.size or 0)
    return 0


def _numel(shape) -> int:
    return int(math.prod(int(d) for d in shape)) if shape is not None and len(shape) else 1


def _tensor_bytes(t) -> int:
    bits = _ELEMENT_BITS.get(t.type)
    if bits is None:
        raise ValueError(f"tensor {_name_of(t)!r}: type {_TYPE_NAMES.get(t.type, t.type)} has no fixed size")
    return (_numel(t.shape) * bits + 7) // 8


def _name_of(t) -> str:
    n = t.name
    return n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n or "")


def _qparam_bytes(t) -> int:
    q = t.quantization
    if q is None:
        return 0
    n = 0
    for arr, size in ((q.scale, _SCALE_BYTES), (q.zeroPoint, _ZERO_POINT_BYTES),
                      (q.min, _MIN_MAX_BYTES), (q.max, _MIN_MAX_BYTES)):
        if arr is not None:
            n += len(arr) * size
    return n


def _is_constant(model, t) -> bool:
    buffers = model.buffers or []
    return bool(t.buffer) and t.buffer < len(buffers) and _buffer_bytes(buffers[t.buffer]) > 0


def _op_name(model, op) -> str:
    oc = model.operatorCodes[op.opcodeIndex]
    code = max(int(oc.builtinCode or 0), int(oc.deprecatedBuiltinCode or 0))
    if code == tfl.BuiltinOperator.CUSTOM:
        cc = oc.customCode
        return "CUSTOM:" + (cc.decode() if isinstance(cc, bytes) else str(cc))
    return _OP_NAMES.get(code, f"OP_{code}")


# ----------------------------------------------------------------------------------------------
# weights
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConstantTensor:
    """One constant tensor of a TFLite subgraph."""

    index: int
    name: str
    dtype: str  # TFLite type name, e.g. "INT8"
    shape: tuple[int, ...]
    buffer: int  # buffer index
    data_bytes: int  # bytes of its buffer
    qparam_bytes: int  # scales (float32) + zero points (int64) + min/max (float32)
    per_channel: bool  # more than one scale

    @property
    def total_bytes(self) -> int:
        return self.data_bytes + self.qparam_bytes


@dataclass(frozen=True)
class TFLiteWeights:
    """The constant bytes a TFLite model holds (see the module doc for what is counted)."""

    tensors: tuple[ConstantTensor, ...]
    data_bytes: int  # the constants' buffers, each buffer once
    qparam_bytes: int  # quantization parameters of the constant tensors
    activation_qparam_bytes: int  # quantization parameters of the non-constant tensors
    buffer_bytes: int  # every buffer of the model, referenced or not

    @property
    def total_bytes(self) -> int:
        """Constant data + their quantization parameters."""
        return self.data_bytes + self.qparam_bytes

    def by_dtype(self) -> dict[str, int]:
        out: dict[str, int] = {}
        seen: set[int] = set()
        for t in self.tensors:
            if t.buffer not in seen:
                seen.add(t.buffer)
                out[t.dtype] = out.get(t.dtype, 0) + t.data_bytes
        return out


def tflite_weight_bytes(tflite_bytes: bytes, subgraph: int = 0) -> TFLiteWeights:
    """Bytes of the constant tensors of ``subgraph`` and of their quantization parameters.

    ``data_bytes`` counts each constant buffer once (tensors sharing a buffer share its bytes);
    per tensor, ``ConstantTensor.data_bytes`` is its buffer's size. Scales count 4 bytes and
    zero points 8 bytes each, as the TFLite schema stores them (float32 / int64).
    """
    model = _model(tflite_bytes)
    sg = model.subgraphs[subgraph]
    consts = []
    act_q = 0
    seen: set[int] = set()
    data = q = 0
    for i, t in enumerate(sg.tensors or []):
        if _is_constant(model, t):
            nbytes = _buffer_bytes(model.buffers[t.buffer])
            qb = _qparam_bytes(t)
            scales = t.quantization.scale if t.quantization is not None else None
            consts.append(ConstantTensor(
                index=i, name=_name_of(t), dtype=_TYPE_NAMES.get(t.type, str(t.type)),
                shape=tuple(int(d) for d in (t.shape if t.shape is not None else ())),
                buffer=int(t.buffer), data_bytes=nbytes, qparam_bytes=qb,
                per_channel=scales is not None and len(scales) > 1))
            if t.buffer not in seen:
                seen.add(t.buffer)
                data += nbytes
            q += qb
        else:
            act_q += _qparam_bytes(t)
    return TFLiteWeights(
        tensors=tuple(consts), data_bytes=data, qparam_bytes=q, activation_qparam_bytes=act_q,
        buffer_bytes=sum(_buffer_bytes(b) for b in (model.buffers or [])))


# ----------------------------------------------------------------------------------------------
# activation arena
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TensorLife:
    """A non-constant tensor's size, lifetime and place in the greedy plan.

    ``first`` is the index of the operator that produces it, -1 for a graph input (alive from
    before the first operator); ``last`` the last operator that reads it, ``num_ops`` for a graph
    output (alive after the last operator)."""

    index: int
    name: str
    nbytes: int
    first: int
    last: int
    offset: int  # in the greedy plan
    kind: str  # "input", "output", "input+output", "intermediate", "variable"

    def overlaps(self, other: "TensorLife") -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass(frozen=True)
class ArenaPlan:
    """A liveness-based plan of a TFLite subgraph's activations (see the module doc)."""

    tensors: tuple[TensorLife, ...]
    op_names: tuple[str, ...]
    live_bytes: tuple[int, ...]  # sum of live tensor bytes at each operator
    peak_bytes: int  # lower bound for any allocator (no in-place sharing)
    peak_op: Optional[int]  # operator index at the peak (None for a subgraph without operators)
    peak_tensors: tuple[int, ...]  # tensor indices alive at the peak
    greedy_bytes: int  # size of the first-fit offset assignment
    alignment: int
    include_io: bool

    @property
    def num_ops(self) -> int:
        return len(self.op_names)

    @property
    def peak_op_name(self) -> Optional[str]:
        return None if self.peak_op is None else self.op_names[self.peak_op]

    def tensor(self, index: int) -> TensorLife:
        for t in self.tensors:
            if t.index == index:
                return t
        raise KeyError(index)


def _align(n: int, alignment: int) -> int:
    return -(-n // alignment) * alignment if alignment > 1 else n


def _first_fit(lives: list[TensorLife], alignment: int) -> tuple[list[TensorLife], int]:
    """Offsets by first fit, largest tensor first (ties: earlier first use, lower index)."""
    order = sorted(lives, key=lambda t: (-t.nbytes, t.first, t.index))
    placed: list[TensorLife] = []
    for t in order:
        size = _align(t.nbytes, alignment)
        offset = 0
        for p in sorted((p for p in placed if p.overlaps(t)), key=lambda p: p.offset):
            if offset + size <= p.offset:
                break
            offset = max(offset, _align(p.offset + _align(p.nbytes, alignment), alignment))
        placed.append(TensorLife(t.index, t.name, t.nbytes, t.first, t.last, offset, t.kind))
    total = max((p.offset + _align(p.nbytes, alignment) for p in placed), default=0)
    placed.sort(key=lambda p: p.index)
    return placed, total


def tflite_arena_plan(tflite_bytes: bytes, subgraph: int = 0, include_io: bool = True,
                      alignment: int = DEFAULT_ALIGNMENT) -> ArenaPlan:
    """Liveness plan of the activations of ``subgraph`` in operator order.

    ``include_io=False`` leaves out the subgraph's inputs and outputs (in a lowered program they
    live in ExecuTorch's CPU arena), keeping what the partition needs on top. ``alignment``
    applies to the greedy offsets only; ``peak_bytes`` is unaligned.
    """
    if alignment < 1:
        raise ValueError(f"alignment must be >= 1, got {alignment}")
    model = _model(tflite_bytes)
    sg = model.subgraphs[subgraph]
    tensors = sg.tensors or []
    ops = sg.operators or []
    n = len(ops)
    inputs = [int(i) for i in (sg.inputs if sg.inputs is not None else []) if i >= 0]
    outputs = [int(i) for i in (sg.outputs if sg.outputs is not None else []) if i >= 0]

    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for i in inputs:
        first[i] = -1
    for k, op in enumerate(ops):
        for i in (op.inputs if op.inputs is not None else []):
            if i >= 0:
                last[int(i)] = k
        for i in (op.outputs if op.outputs is not None else []):
            if i >= 0:
                first.setdefault(int(i), k)
    for i in outputs:
        last[i] = n
        first.setdefault(i, -1)

    lives = []
    for i in sorted(set(first) | set(last)):
        t = tensors[i]
        if _is_constant(model, t):
            continue
        if t.isVariable:
            a, b, kind = -1, n, "variable"
        else:
            is_in, is_out = i in inputs, i in outputs
            kind = ("input+output" if is_in and is_out else "input" if is_in
                    else "output" if is_out else "intermediate")
            if not include_io and kind != "intermediate":
                continue
            a = first.get(i, -1)
            b = last.get(i, a)
            if b < max(a, 0):  # an input nobody reads, or an output-less dead value
                b = max(a, 0)
        lives.append(TensorLife(i, _name_of(t), _tensor_bytes(t), a, b, 0, kind))

    live_bytes = tuple(sum(t.nbytes for t in lives if t.first <= k <= t.last) for k in range(n))
    if n:
        peak_op = max(range(n), key=lambda k: (live_bytes[k], -k))
        peak = live_bytes[peak_op]
        at_peak = tuple(t.index for t in lives if t.first <= peak_op <= t.last)
    else:
        peak_op, peak = None, sum(t.nbytes for t in lives)
        at_peak = tuple(t.index for t in lives)
    placed, total = _first_fit(lives, alignment)
    return ArenaPlan(
        tensors=tuple(placed), op_names=tuple(_op_name(model, op) for op in ops),
        live_bytes=live_bytes, peak_bytes=peak, peak_op=peak_op, peak_tensors=at_peak,
        greedy_bytes=total, alignment=alignment, include_io=include_io)


# ----------------------------------------------------------------------------------------------
# multiply-accumulates of TFLite operators
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OpMacs:
    index: int
    name: str
    macs: int


def tflite_macs(tflite_bytes: bytes, subgraph: int = 0) -> tuple[OpMacs, ...]:
    """Multiply-accumulates of each operator of ``subgraph`` (0 for operators without MACs).

    CONV_2D: output elements x kernel height x width x input channels per group (filter
    ``[out, kh, kw, in/groups]``); DEPTHWISE_CONV_2D: output elements x kh x kw; FULLY_CONNECTED
    and BATCH_MATMUL: output elements x reduction length; TRANSPOSE_CONV: input elements x output
    channels x kh x kw. Same conventions as ``neutronq.lowering.macs`` on the ATen graph.
    """
    model = _model(tflite_bytes)
    sg = model.subgraphs[subgraph]
    tensors = sg.tensors or []

    def shape(i):
        return tuple(int(d) for d in (tensors[i].shape if tensors[i].shape is not None else ()))

    out = []
    for k, op in enumerate(sg.operators or []):
        name = _op_name(model, op)
        ins = [int(i) for i in (op.inputs if op.inputs is not None else [])]
        outs = [int(i) for i in (op.outputs if op.outputs is not None else []) if i >= 0]
        macs = 0
        try:
            if name in ("CONV_2D", "CONV_3D") and outs:
                w = shape(ins[1])
                macs = _numel(shape(outs[0])) * math.prod(w[1:])
            elif name == "DEPTHWISE_CONV_2D" and outs:
                w = shape(ins[1])
                macs = _numel(shape(outs[0])) * math.prod(w[1:-1])
            elif name == "FULLY_CONNECTED" and outs:
                macs = _numel(shape(outs[0])) * shape(ins[1])[-1]
            elif name == "BATCH_MATMUL" and outs:
                opts = op.builtinOptions
                a = shape(ins[0])
                reduce = a[-2] if (opts is not None and getattr(opts, "adjX", False)) else a[-1]
                macs = _numel(shape(outs[0])) * reduce
            elif name == "TRANSPOSE_CONV":
                w = shape(ins[1])
                macs = _numel(shape(ins[2])) * w[0] * math.prod(w[1:-1])
        except (IndexError, TypeError):
            macs = 0
        out.append(OpMacs(k, name, int(macs)))
    return tuple(out)


# ----------------------------------------------------------------------------------------------
# a lowered program
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PartitionMemory:
    """One delegate of the program. ``weights`` / ``arena`` / ``temp`` are ``None`` when its
    payload is not neutronq's TFLite payload (NXP converter output, another backend)."""

    delegate_index: int
    backend_id: str
    payload_bytes: int
    weights: Optional[TFLiteWeights]
    arena: Optional[ArenaPlan]  # the whole subgraph, inputs and outputs included
    internal: Optional[ArenaPlan]  # without the subgraph's inputs and outputs
    transpose_bytes: Optional[int]  # channels-last copies the runtime allocates per call
    macs: tuple[OpMacs, ...] = ()
    note: str = ""

    @property
    def temp_bytes(self) -> Optional[int]:
        """What the partition needs beyond the CPU arena while it runs: its internal arena peak
        + the transposed IO copies."""
        if self.internal is None or self.transpose_bytes is None:
            return None
        return self.internal.peak_bytes + self.transpose_bytes

    @property
    def total_macs(self) -> int:
        return sum(m.macs for m in self.macs)


@dataclass(frozen=True)
class ProgramMemory:
    """Memory of one method of a lowered ExecuTorch program (see the module doc)."""

    method: str
    program_bytes: int  # the whole .pte
    cpu_arena_buffers: tuple[int, ...]  # non_const_buffer_sizes (entry 0 reserved, 0)
    cpu_constant_bytes: int  # constant_buffer + named data + mutable data segments of the .pte
    partitions: tuple[PartitionMemory, ...]

    @property
    def cpu_arena_bytes(self) -> int:
        return sum(self.cpu_arena_buffers)

    @property
    def npu_weight_bytes(self) -> int:
        """Constant bytes of the NPU partitions (payload size where it can't be read)."""
        return sum(p.weights.total_bytes if p.weights is not None else p.payload_bytes
                   for p in self.partitions)

    @property
    def weight_bytes(self) -> int:
        return self.cpu_constant_bytes + self.npu_weight_bytes

    @property
    def npu_temp_peak_bytes(self) -> Optional[int]:
        """The largest per-partition temporary need (partitions run one at a time); ``None`` if
        a Neutron partition's need could not be computed."""
        temps = [p.temp_bytes for p in self.partitions if p.backend_id == NEUTRON_BACKEND_ID]
        if any(t is None for t in temps):
            return None
        return max(temps, default=0)

    @property
    def peak_activation_bytes(self) -> Optional[int]:
        """CPU planned arena + the largest partition temporary need."""
        t = self.npu_temp_peak_bytes
        return None if t is None else self.cpu_arena_bytes + t

    @property
    def npu_macs(self) -> tuple[OpMacs, ...]:
        """MACs of every NPU operator, named ``p<delegate>.<op index>:<op>``."""
        return tuple(OpMacs(m.index, f"p{p.delegate_index}.{m.index}:{m.name}", m.macs)
                     for p in self.partitions for m in p.macs)

    @property
    def need(self) -> "MemoryNeed":
        return MemoryNeed(weight_bytes=self.weight_bytes,
                          activation_bytes=self.peak_activation_bytes,
                          program_bytes=self.program_bytes)


def _pte_bytes(program) -> bytes:
    if isinstance(program, (bytes, bytearray, memoryview)):
        return bytes(program)
    if isinstance(program, (str, os.PathLike)):
        with open(program, "rb") as f:
            return f.read()
    buf = getattr(program, "buffer", None)
    if isinstance(buf, (bytes, bytearray, memoryview)):
        return bytes(buf)
    hint = " (an EdgeProgramManager: call .to_executorch() first)" if hasattr(program, "to_executorch") else ""
    raise TypeError(f"program_memory takes an ExecutorchProgramManager, .pte bytes or a path; got "
                    f"{type(program).__name__}{hint}.")


def _transpose_bytes(model_bytes: bytes, in_flags, out_flags) -> int:
    """Bytes ExecuTorch's Neutron runtime allocates per call for channels-last copies: one per
    input/output whose flag is set and whose channel count (TFLite: last dim) is not 1."""
    model = _model(model_bytes)
    sg = model.subgraphs[0]
    total = 0
    for ids, flags in ((sg.inputs, in_flags), (sg.outputs, out_flags)):
        for i, flag in zip(list(ids if ids is not None else []), flags):
            t = sg.tensors[i]
            shp = list(t.shape if t.shape is not None else [])
            if flag and len(shp) >= 3 and shp[-1] != 1:
                total += _align(_tensor_bytes(t), 16)
    return total


def _partition(index: int, delegate, data: bytes, alignment: int) -> PartitionMemory:
    if delegate.id != NEUTRON_BACKEND_ID:
        return PartitionMemory(index, delegate.id, len(data), None, None, None, None,
                               note=f"backend {delegate.id}: counted by payload size only")
    try:
        payload = decode_payload(data)
    except PayloadError as e:
        return PartitionMemory(index, delegate.id, len(data), None, None, None, None,
                               note=f"payload not readable by neutronq ({e}); counted by size only")
    if payload.kind != "tflite":
        return PartitionMemory(index, delegate.id, len(data), None, None, None, None,
                               note=f"payload kind {payload.kind!r}; counted by size only")
    model = payload.tflite
    return PartitionMemory(
        delegate_index=index, backend_id=delegate.id, payload_bytes=len(data),
        weights=tflite_weight_bytes(model),
        arena=tflite_arena_plan(model, include_io=True, alignment=alignment),
        internal=tflite_arena_plan(model, include_io=False, alignment=alignment),
        transpose_bytes=_transpose_bytes(model, payload.input_channels_last, payload.output_channels_last),
        macs=tflite_macs(model))


def program_memory(program, method: Optional[str] = None,
                   alignment: int = DEFAULT_ALIGNMENT) -> ProgramMemory:
    """Memory of ``method`` (default ``"forward"``, else the first) of a lowered program.

    ``program``: an ``ExecutorchProgramManager`` (its ``.buffer`` is read), the ``.pte`` bytes, or
    a path to a ``.pte``. The peak activation memory is the CPU planned arena + the largest
    partition temporary need (partitions run one at a time; their inputs and outputs are planned
    in the CPU arena) — see the module doc for why and for what is not counted.
    """
    from executorch.exir._serialize._program import deserialize_pte_binary
    from executorch.exir.schema import DataLocation

    data = _pte_bytes(program)
    pte = deserialize_pte_binary(data)
    prog = pte.program
    plans = {p.name: p for p in prog.execution_plan}
    if method is None:
        plan = plans.get("forward") or prog.execution_plan[0]
    elif method in plans:
        plan = plans[method]
    else:
        raise ValueError(f"The program has no method {method!r}; it has {', '.join(plans)}.")

    const = sum(len(b.storage) for b in (prog.constant_buffer or []))
    for extra in (pte.mutable_data or []):
        const += len(getattr(extra, "storage", b"") or b"")
    named = getattr(pte, "named_data", None)
    if named is not None:
        const += sum(len(b) for b in (getattr(named, "buffers", None) or []))

    parts = []
    for i, d in enumerate(plan.delegates or []):
        if d.processed.location != DataLocation.INLINE:
            raise ValueError(f"delegate {i}: payload location {d.processed.location} was not restored")
        parts.append(_partition(i, d, bytes(prog.backend_delegate_data[d.processed.index].data), alignment))
    return ProgramMemory(
        method=plan.name, program_bytes=len(data),
        cpu_arena_buffers=tuple(int(s) for s in (plan.non_const_buffer_sizes or [])),
        cpu_constant_bytes=const, partitions=tuple(parts))


# ----------------------------------------------------------------------------------------------
# compute floor
# ----------------------------------------------------------------------------------------------
def _spec(spec) -> NeutronTargetSpec:
    if isinstance(spec, NeutronTargetSpec):
        return spec
    if isinstance(spec, TargetInfo):
        return NeutronTargetSpec(spec.name) if KNOWN_TARGETS.get(spec.name) == spec else _InfoSpec(spec)
    return NeutronTargetSpec(str(spec))


class _InfoSpec(NeutronTargetSpec):
    """A spec around a TargetInfo that is not one of KNOWN_TARGETS (tests, what-ifs)."""

    def __init__(self, info: TargetInfo):
        self._info = info
        self.target = info.name
        self.converter_flavor = None


@dataclass(frozen=True)
class OpFloor:
    name: str
    macs: int
    seconds: Optional[float]


@dataclass(frozen=True)
class ComputeFloor:
    """MACs / peak MAC rate: 100 % utilisation, no memory stalls. ``None`` seconds where the
    target's figures are unknown (``basis`` says which)."""

    target: str
    total_macs: int
    macs_per_second: Optional[float]
    basis: str  # how the rate was obtained, or why it is unknown
    ops: tuple[OpFloor, ...]

    @property
    def seconds(self) -> Optional[float]:
        return None if self.macs_per_second is None else self.total_macs / self.macs_per_second

    @property
    def known(self) -> bool:
        return self.macs_per_second is not None


MacsLike = Union[int, Mapping[str, int], Iterable[Union[int, OpMacs, tuple]]]


def _mac_items(macs: MacsLike) -> list[tuple[str, int]]:
    if isinstance(macs, (int, np.integer)):
        return [("total", int(macs))]
    if isinstance(macs, Mapping):
        return [(str(k), int(v)) for k, v in macs.items()]
    items = []
    for k, m in enumerate(macs):
        if isinstance(m, OpMacs):
            items.append((m.name, int(m.macs)))
        elif isinstance(m, tuple):
            items.append((str(m[0]), int(m[1])))
        else:
            items.append((f"op{k}", int(m)))
    return items


def compute_floor(macs: MacsLike, spec) -> ComputeFloor:
    """The compute floor of ``macs`` on ``spec`` (a ``NeutronTargetSpec``, target name or
    ``TargetInfo``): MACs / (MACs per cycle x NPU clock), or MACs / (published TOPS / 2).

    ``macs``: a total, a mapping name -> MACs, or a sequence of ``OpMacs`` / ``(name, macs)`` /
    ints (e.g. ``tflite_macs(model)`` or ``ProgramMemory.npu_macs``). A floor: 100 % MAC
    utilisation, no memory stalls, no data movement, no CPU time. ``seconds`` is ``None`` where
    the target's figures are not published.
    """
    s = _spec(spec)
    info = s.info
    rate = s.peak_macs_per_second
    if info.total_macs and info.npu_clock_mhz:
        basis = f"{info.total_macs} MACs/cycle x {info.npu_clock_mhz:g} MHz"
    elif info.peak_tops:
        basis = f"{info.peak_tops:g} TOPS / 2 ops per MAC"
    else:
        missing = [f for f in ("total_macs", "npu_clock_mhz") if getattr(info, f) is None]
        basis = f"unknown: {', '.join(missing)} not published for {info.name} (and no peak TOPS)"
    items = _mac_items(macs)
    ops = tuple(OpFloor(n, m, None if rate is None else m / rate) for n, m in items)
    return ComputeFloor(target=info.name, total_macs=sum(m for _, m in items),
                        macs_per_second=rate, basis=basis, ops=ops)


# ----------------------------------------------------------------------------------------------
# fits
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MemoryNeed:
    """What a model needs: constant bytes, peak activation bytes, and (when known) the size of
    the whole program image that has to be stored."""

    weight_bytes: int
    activation_bytes: Optional[int]
    program_bytes: Optional[int] = None


@dataclass(frozen=True)
class FitCheck:
    what: str  # e.g. "program in flash", "activations + weights in SRAM"
    memory: str  # "flash", "sram", "dram"
    need_bytes: Optional[int]
    capacity_bytes: Optional[int]
    status: str  # "fits", "does not fit", "unknown"
    note: str = ""


@dataclass(frozen=True)
class FitReport:
    target: str
    checks: tuple[FitCheck, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def status(self) -> str:
        """"does not fit" if any check fails, else "unknown" if any is unknown, else "fits"."""
        states = {c.status for c in self.checks}
        if "does not fit" in states:
            return "does not fit"
        if "unknown" in states or not self.checks:
            return "unknown"
        return "fits"

    @property
    def fits(self) -> Optional[bool]:
        return {"fits": True, "does not fit": False}.get(self.status)


def _check(what, memory, need, capacity, note="", unknown_why="") -> FitCheck:
    if need is None:
        return FitCheck(what, memory, None, capacity, "unknown", note or "the need could not be computed")
    if capacity is None:
        return FitCheck(what, memory, need, None, "unknown", unknown_why or note)
    return FitCheck(what, memory, need, capacity, "fits" if need <= capacity else "does not fit", note)


def fits(memory: Union[ProgramMemory, MemoryNeed], spec, prefetch_weights: bool = False) -> FitReport:
    """Compare a model's needs with ``spec``'s memories, with the numbers.

    * storage: the program image (or, without one, the weights) against on-chip flash, where the
      target has it; "unknown" for external flash, whose size the board decides;
    * working memory: peak activations (+ the NPU weights where the NPU reads them from SRAM)
      against SRAM, or everything against the reference board's DRAM on application processors.

    ``prefetch_weights``: on targets whose NPU reads weights from SRAM (i.MX RT700), assume the
    model was converted with NXP's ``fetch_constants_to_sram``: the weights stay in flash and the
    NPU copies them into an SRAM scratch as it goes (that scratch is not counted). Default: the
    whole model sits in SRAM.

    Any check whose capacity is not published is "unknown", never "fits".
    """
    s = _spec(spec)
    info = s.info
    need = memory.need if isinstance(memory, ProgramMemory) else memory
    stored = need.program_bytes if need.program_bytes is not None else need.weight_bytes
    stored_what = "program image (.pte)" if need.program_bytes is not None else "weights"
    checks: list[FitCheck] = []
    notes: list[str] = []

    if info.activations_in == "dram":
        total = None if need.activation_bytes is None else stored + need.activation_bytes
        checks.append(_check(f"{stored_what} + activations in DRAM", "dram", total, info.dram_bytes,
                             note=info.sources.get("dram_bytes", ""),
                             unknown_why=f"DRAM size of {info.name} boards not recorded"))
    else:
        if info.flash_on_chip:
            checks.append(_check(f"{stored_what} in on-chip flash", "flash", stored, info.flash_bytes,
                                 unknown_why=f"on-chip flash size of {info.name} not published"))
        elif info.flash_on_chip is False:
            checks.append(_check(f"{stored_what} in external flash", "flash", stored, None,
                                 unknown_why="external flash: its size depends on the board"))
        else:
            checks.append(_check(f"{stored_what} in flash", "flash", stored, None,
                                 unknown_why=f"flash of {info.name} not published"))
        if info.npu_weights_from == "sram" and prefetch_weights:
            checks.append(_check("activations in SRAM (weights prefetched from flash)", "sram",
                                 need.activation_bytes, info.sram_bytes,
                                 unknown_why=f"SRAM size of {info.name} not published"))
            notes.append("Weights stay in flash and are prefetched into SRAM by the NPU "
                         "(fetch_constants_to_sram); the prefetch scratch is not counted.")
        elif info.npu_weights_from == "sram":
            npu_w = memory.npu_weight_bytes if isinstance(memory, ProgramMemory) else need.weight_bytes
            act = need.activation_bytes
            total = None if act is None else act + npu_w
            checks.append(_check("activations + NPU weights in SRAM", "sram", total, info.sram_bytes,
                                 unknown_why=f"SRAM size of {info.name} not published"))
            if act is not None and info.sram_bytes is not None and total > info.sram_bytes >= act:
                notes.append("The activations alone fit in SRAM: with the weights kept in external "
                             "flash and prefetched by the NPU (NXP converter option "
                             "fetch_constants_to_sram; fits(..., prefetch_weights=True)) it may fit; "
                             "the prefetch scratch is not counted.")
        else:
            checks.append(_check("activations in SRAM", "sram", need.activation_bytes, info.sram_bytes,
                                 unknown_why=f"SRAM size of {info.name} not published"))
            if info.npu_weights_from is None:
                notes.append(f"Where the {info.name} NPU reads weights from is not published; "
                             "weights are checked against flash only.")
    return FitReport(target=info.name, checks=tuple(checks), notes=tuple(notes))
