"""``TFLiteModule``: an int8 TFLite model as a batched ``torch.nn.Module`` that computes exactly
what LiteRT's reference kernels (``OpResolverType.BUILTIN_REF``) compute.

    module = TFLiteModule(tflite_bytes).to(device)
    y = module(x)            # x: int8 [N, *model_input_shape[1:]], TFLite layout (NHWC)

Batching. The model's tensors have their batch baked in (usually 1). The module takes any
``N`` that is a multiple of the model's own leading dim ``d0`` of each input (any ``N`` when
``d0 == 1``): the input is ``N / d0`` model-sized samples stacked on dim 0, and the output is the
``N / d0`` model outputs stacked the same way. Internally every tensor keeps an explicit sample
axis in front of its TFLite shape (``[S, *shape]``, see ``base``), so ops that move or merge the
model's dim 0 (a TRANSPOSE whose permutation moves axis 0, a RESHAPE that folds the leading dim
into another, a reduction or concatenation over axis 0, a softmax over a rank-1 tensor) still run
batched: they act on the axes after the sample axis. An op emulation that cannot take the sample
axis declares ``per_sample = True`` and is run sample by sample inside the batched run (none of
the registered ops needs it today). Graph inputs whose leading dims imply different sample
counts raise ``EmulationError``.

Weights, tables and per-channel parameters are buffers, so ``.to(device)`` moves them; the
forward pass uses only PyTorch tensor ops (no numpy) and runs on any device. Exactness never
depends on the device's float behaviour beyond IEEE float32/float64 arithmetic: see
``conv``/``requantize`` for how accumulation and requantization are kept exact. On CUDA, cuDNN's
TF32 and non-direct convolution algorithms (Winograd, FFT) are not exact for integers: the
forward pass disables cuDNN (PyTorch's own direct kernels run) and TF32 matmuls for its
duration.

An op without an emulation raises ``EmulationError`` at construction, naming the op and its
output tensor. ``OPS`` (``neutronq.runtime.emulate.OPS``) lists what is registered.
"""

from __future__ import annotations

import contextlib
from typing import Optional

import numpy as np
import torch
from ai_edge_litert import schema_py_generated as tfl

from neutronq.runtime.emulate.base import OP_NAMES, OPS, EmulationError, OpInfo, TensorInfo, tensor_type
from neutronq.runtime.emulate.conv import ConvOp
from neutronq.runtime.emulate.movement import PadOp
from neutronq.runtime.emulate.requantize import Requantizer
from neutronq.runtime.emulate.scratch import Scratch

__all__ = ["TFLiteModule", "parse_tflite"]


def _buffer_bytes(model, raw: bytes, t) -> Optional[np.ndarray]:
    if t.buffer <= 0 or t.buffer >= len(model.buffers):
        return None
    buf = model.buffers[t.buffer]
    if getattr(buf, "offset", 0) and buf.offset > 1:  # data stored after the flatbuffer
        return np.frombuffer(raw[buf.offset: buf.offset + buf.size], np.uint8)
    if buf.data is None or len(buf.data) == 0:
        return None
    return np.asarray(buf.data, np.uint8)


def parse_tflite(tflite: bytes) -> tuple[list[TensorInfo], list[OpInfo], list[int], list[int]]:
    """(tensors, operators, input ids, output ids) of subgraph 0."""
    raw = bytes(tflite)
    if raw[4:8] != b"TFL3":
        raise EmulationError("not a TFLite flatbuffer (no TFL3 identifier)")
    model = tfl.ModelT.InitFromObj(tfl.Model.GetRootAsModel(raw, 0))
    if not model.subgraphs:
        raise EmulationError("the TFLite model has no subgraph")
    sg = model.subgraphs[0]
    computed = {int(j) for j in (sg.inputs if sg.inputs is not None else [])}
    computed.update(int(j) for o in sg.operators for j in (o.outputs if o.outputs is not None else []))
    tensors = []
    for i, t in enumerate(sg.tensors):
        (tdtype, ndtype), tname = tensor_type(t.type)
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
        q = t.quantization
        scales = zps = None
        axis = 0
        if q is not None and q.scale is not None and len(q.scale) > 0:
            scales = np.asarray(q.scale, np.float32)
            zps = np.asarray(q.zeroPoint if q.zeroPoint is not None else [0] * len(scales), np.int64)
            axis = int(q.quantizedDimension)
        data = None
        raw_data = _buffer_bytes(model, raw, t)
        if raw_data is not None:
            if ndtype is None:
                raise EmulationError(f"constant tensor {i} '{t.name.decode()}' has unsupported type {tname}")
            data = np.frombuffer(raw_data.tobytes(), ndtype).reshape(shape)
        elif 0 in shape and i not in computed and ndtype is not None:
            data = np.zeros(shape, ndtype)  # an empty constant (RESHAPE's shape [] for a scalar) has no buffer data
        tensors.append(TensorInfo(i, (t.name or b"").decode(), shape, tname, tdtype, scales, zps, axis, data))
    ops = []
    for i, o in enumerate(sg.operators):
        code = model.operatorCodes[o.opcodeIndex]
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        name = OP_NAMES.get(builtin, f"BUILTIN_{builtin}")
        if name == "CUSTOM":
            name = f"CUSTOM:{(code.customCode or b'').decode()}"
        ins = [tensors[j] if j >= 0 else None for j in (o.inputs if o.inputs is not None else [])]
        outs = [tensors[j] for j in (o.outputs if o.outputs is not None else [])]
        ops.append(OpInfo(i, name, int(code.version), o.builtinOptions, ins, outs))
    inputs = [int(j) for j in (sg.inputs if sg.inputs is not None else [])]
    outputs = [int(j) for j in (sg.outputs if sg.outputs is not None else [])]
    return tensors, ops, inputs, outputs


def _fuse_pads(modules: list, graph_outputs: set) -> list:
    """A PAD of H and W whose only reader is a convolution joins that convolution's padding:
    PAD fills with the zero point of its output, which is the convolution's input zero point,
    and the convolution pads with that zero point too, so the values convolved are the same."""
    readers: dict[int, list] = {}
    for m in modules:
        for i in m.dynamic_inputs:
            readers.setdefault(i, []).append(m)
    dropped = set()
    for m in modules:
        if not isinstance(m, PadOp) or len(m.pad) != 8:
            continue
        c0, c1, w0, w1, h0, h1, n0, n1 = m.pad
        out = m.output_ids[0]
        users = readers.get(out, [])
        if c0 or c1 or n0 or n1 or out in graph_outputs or len(users) != 1:
            continue
        conv = users[0]
        if not isinstance(conv, ConvOp) or conv.dynamic_inputs != [out] or m.value != conv.zp_in:
            continue
        left, right, top, bottom = conv.pad
        conv.pad = (left + w0, right + w1, top + h0, bottom + h1)
        conv.dynamic_inputs = list(m.dynamic_inputs[:1])
        dropped.add(id(m))
    return [m for m in modules if id(m) not in dropped]


@contextlib.contextmanager
def _exact_backends(device: torch.device):
    if device.type != "cuda":
        yield
        return
    matmul = torch.backends.cuda.matmul
    saved = matmul.allow_tf32
    matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=False, allow_tf32=False):
            yield
    finally:
        matmul.allow_tf32 = saved


class TFLiteModule(torch.nn.Module):
    """The int8 TFLite model ``tflite_bytes`` (subgraph 0) as a batched PyTorch module.

    ``forward(*inputs)`` takes one tensor per model input, in the model's own dtype and layout,
    with ``N`` (a multiple of the model's leading dim) in place of the model's leading dim, and
    returns the output tensor (a tuple when the model has several outputs).

    ``compile=True`` runs the convolutions' requantization through ``torch.compile`` (one fused
    pass instead of a handful of chunked in-place ops; the same exact arithmetic, so the same
    integers). It needs a working ``torch.compile`` backend (a C++ compiler on CPU, Triton on
    CUDA) and compiles once per process (tens of seconds; inductor caches it on disk).
    """

    def __init__(self, tflite_bytes: bytes, compile: bool = False):
        super().__init__()
        tensors, ops, inputs, outputs = parse_tflite(tflite_bytes)
        self.tensors = tensors
        self.input_ids, self.output_ids = inputs, outputs
        for i in inputs:
            if tensors[i].rank == 0:
                raise EmulationError(f"model input {tensors[i].describe()} is a scalar: no batch dim")
        available = set(inputs) | {t.index for t in tensors if t.is_const}
        modules = []
        for op in ops:
            builder = OPS.get(op.name)
            if builder is None:
                raise EmulationError(
                    f"TFLite op {op.name} (operator {op.index}, output "
                    f"{op.outputs[0].describe() if op.outputs else '-'}) has no emulation; "
                    f"emulated ops: {', '.join(sorted(OPS))}")
            for t in op.inputs:
                if t is not None and t.index not in available:
                    raise EmulationError(f"{op.where()}: input {t.describe()} is not computed before it "
                                         "(variable tensors and control flow are not emulated)")
            modules.append(builder(op))
            available.update(t.index for t in op.outputs)
        missing = [tensors[i].describe() for i in outputs if i not in available]
        if missing:
            raise EmulationError(f"model outputs never computed: {missing}")
        modules = _fuse_pads(modules, set(outputs))
        self.ops = torch.nn.ModuleList(modules)
        self._scratch = Scratch()
        for m in modules:
            if hasattr(m, "scratch"):
                m.scratch = self._scratch
        if compile:  # requantization through torch.compile: one fused pass, same exact arithmetic
            for m in self.modules():
                if isinstance(m, Requantizer):
                    m.compiled = True
        # free every intermediate after its last use
        last_use: dict[int, int] = {}
        for k, m in enumerate(self.ops):
            for i in m.dynamic_inputs:
                last_use[i] = k
        self._const_outputs = {}
        for k, i in enumerate(outputs):
            if tensors[i].is_const:  # a constant model output: a buffer, expanded per sample
                self.register_buffer(f"const_output{k}", torch.from_numpy(np.ascontiguousarray(tensors[i].data)))
                self._const_outputs[i] = f"const_output{k}"
        keep = set(outputs)
        self._free_after = [[i for i in m.dynamic_inputs if last_use.get(i) == k and i not in keep]
                            for k, m in enumerate(self.ops)]

    def release_scratch(self) -> None:
        """Drop the scratch buffers kept between calls (they are re-made on the next call)."""
        self._scratch.clear()

    @property
    def input_shapes(self) -> list[tuple[int, ...]]:
        return [self.tensors[i].shape for i in self.input_ids]

    @property
    def output_shapes(self) -> list[tuple[int, ...]]:
        return [self.tensors[i].shape for i in self.output_ids]

    def _samples(self, inputs) -> int:
        samples = None
        for x, i in zip(inputs, self.input_ids):
            t = self.tensors[i]
            if t.dtype is not None and x.dtype != t.dtype:
                raise EmulationError(f"model input {t.describe()}: got a {x.dtype} tensor")
            if x.dim() != t.rank or tuple(x.shape[1:]) != t.shape[1:] or t.shape[0] == 0 \
                    or x.shape[0] % t.shape[0]:
                raise EmulationError(
                    f"model input {t.describe()}: got shape {tuple(x.shape)}; expected "
                    f"[N, {', '.join(map(str, t.shape[1:]))}] with N a multiple of {t.shape[0]}")
            s = x.shape[0] // t.shape[0]
            if samples is not None and s != samples:
                raise EmulationError(f"model inputs imply different sample counts ({samples} and {s})")
            samples = s
        return samples

    def forward(self, *inputs: torch.Tensor):
        if len(inputs) != len(self.input_ids):
            raise EmulationError(f"the model takes {len(self.input_ids)} inputs; got {len(inputs)}")
        samples = self._samples(inputs)
        values: dict[int, torch.Tensor] = {}
        for x, i in zip(inputs, self.input_ids):
            values[i] = x.reshape(samples, *self.tensors[i].shape)
        device = inputs[0].device if inputs else torch.device("cpu")
        with _exact_backends(device):
            for k, m in enumerate(self.ops):
                args = [values[i] for i in m.dynamic_inputs]
                if getattr(m, "per_sample", False) and samples > 1:
                    parts = [m(*(a[s:s + 1] for a in args)) for s in range(samples)]
                    outs = tuple(torch.cat([p[j] for p in parts]) for j in range(len(parts[0])))
                else:
                    outs = m(*args)
                for i, y in zip(m.output_ids, outs):
                    values[i] = y
                for i in self._free_after[k]:
                    values.pop(i, None)
        results = []
        for i in self.output_ids:
            t = self.tensors[i]
            if i in values:
                y = values[i]
            else:  # a constant output
                y = getattr(self, self._const_outputs[i]).expand(samples, *t.shape)
            results.append(y.reshape(samples * t.shape[0], *t.shape[1:]) if t.rank else y)
        return results[0] if len(results) == 1 else tuple(results)
