"""Data movement: RESHAPE, SQUEEZE, EXPAND_DIMS, TRANSPOSE, STRIDED_SLICE, SLICE, PAD, PADV2,
CONCATENATION. Values are moved, never rescaled.

* RESHAPE / SQUEEZE / EXPAND_DIMS: the output tensor's own shape (the graph's static shapes are
  authoritative), applied per sample.
* TRANSPOSE: the constant permutation, on the axes after the sample axis.
* STRIDED_SLICE (``strided_slice.cc``): TensorFlow's rules for ``begin_mask``, ``end_mask``,
  ``shrink_axis_mask`` and the ``offset`` option (``end = begin + end``); negative indices count
  from the end and are clamped to the dim. ``ellipsis_mask`` / ``new_axis_mask`` are refused.
* PAD pads with the output zero point; PADV2 with its constant value.
* MIRROR_PAD (``mirror_pad.cc``): REFLECT (the edge not repeated) or SYMMETRIC (repeated).
* SPLIT / SPLIT_V (``split.cc``, ``split_v.cc``): the input's bytes cut along the constant axis
  (equal parts, or the constant sizes, one of them -1 for the rest).
* CONCATENATION (int8): LiteRT's Prepare requires every input to have the output's scale and
  zero point (``TF_LITE_ENSURE_EQ``), so the reference copies bytes; a model whose inputs differ
  does not load in LiteRT and is refused here too (the converter puts a QUANTIZE in front).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from neutronq.runtime.emulate.base import EmulatedOp, OpInfo, register

__all__ = ["ReshapeOp", "TransposeOp", "SliceOp", "PadOp", "MirrorPadOp", "SplitOp", "ConcatOp",
           "strided_slice_indices"]


class ReshapeOp(EmulatedOp):
    def __init__(self, op: OpInfo):
        super().__init__(op)
        x, out = op.inputs[0], op.outputs[0]
        if int(np.prod(x.shape)) != int(np.prod(out.shape)):
            raise op.fail(f"{x.describe()} and {out.describe()} differ in size")
        self.out_shape = out.shape

    def forward(self, x, *_):
        return (x.reshape(x.shape[0], *self.out_shape),)


register("RESHAPE", "SQUEEZE", "EXPAND_DIMS")(ReshapeOp)


class TransposeOp(EmulatedOp):
    def __init__(self, op: OpInfo):
        super().__init__(op)
        perm = op.inputs[1]
        if perm is None or not perm.is_const:
            raise op.fail("the permutation must be a constant")
        rank = op.inputs[0].rank
        self.perm = [0] + [int(p) % rank + 1 for p in np.asarray(perm.data).reshape(-1)]

    def forward(self, x):
        return (x.permute(*self.perm).contiguous(),)


register("TRANSPOSE")(TransposeOp)


def strided_slice_indices(op: OpInfo, shape, begin, end, strides):
    """Per dim: the selected indices (a range) and whether the dim is shrunk, following
    ``reference_ops::StartForAxis`` / ``EndForAxis``: a negative index counts from the end, it is
    clamped to [0, size] (stride > 0) or [-1, size - 1] (stride < 0), and a mask bit then
    overrides it; ``offset`` adds the start to the end; a shrunk axis reads ``[start, start + 1)``
    with its stride, which is empty for a negative stride (LiteRT then leaves the output
    unwritten: refused here)."""
    begin_mask = op.option("beginMask", 0)
    end_mask = op.option("endMask", 0)
    shrink = op.option("shrinkAxisMask", 0)
    if op.option("ellipsisMask", 0) or op.option("newAxisMask", 0):
        raise op.fail("STRIDED_SLICE with ellipsis_mask or new_axis_mask is not emulated")
    offset = bool(op.option("offset", False))
    dims = []
    for i, size in enumerate(shape):
        s = int(strides[i]) if i < len(strides) else 1
        if s == 0:
            raise op.fail("stride 0")
        start = int(begin[i]) if i < len(begin) else 0
        start = start + size if start < 0 else start
        start = min(max(start, 0), size) if s > 0 else min(max(start, -1), size - 1)
        if begin_mask >> i & 1:
            start = 0 if s > 0 else size - 1
        if shrink >> i & 1:
            if s < 0 or not 0 <= start < size:
                raise op.fail(f"shrinking dim {i} with stride {s} from {start} reads nothing in LiteRT "
                              "(its output is left unwritten)")
            dims.append((range(start, start + 1), True))
            continue
        stop = int(end[i]) if i < len(end) else size
        if offset:
            stop += start
        stop = stop + size if stop < 0 else stop
        stop = min(max(stop, 0), size) if s > 0 else min(max(stop, -1), size - 1)
        if end_mask >> i & 1:
            stop = size if s > 0 else -1
        dims.append((range(start, stop, s), False))
    return dims


class SliceOp(EmulatedOp):
    """STRIDED_SLICE and SLICE as per-dim index selections."""

    def __init__(self, op: OpInfo, dims):
        super().__init__(op)
        self.out_shape = op.outputs[0].shape
        self.steps = []
        for axis, (r, _) in enumerate(dims):
            size = op.inputs[0].shape[axis]
            if r.step == 1 and r.start == 0 and r.stop == size:
                continue
            if r.step > 0 and len(r):
                self.steps.append((axis + 1, slice(r.start, r.stop, r.step), None))
            else:
                name = f"index{axis}"
                self.register_buffer(name, torch.tensor(list(r), dtype=torch.int64))
                self.steps.append((axis + 1, None, name))
        got = tuple(len(r) for r, shrunk in dims if not shrunk)
        if got != tuple(self.out_shape):
            raise op.fail(f"computed output shape {got} differs from the model's {self.out_shape}")

    def forward(self, x, *_):
        for axis, sl, name in self.steps:
            if sl is not None:
                x = x[(slice(None),) * axis + (sl,)]
            else:
                x = x.index_select(axis, getattr(self, name))
        return (x.reshape(x.shape[0], *self.out_shape).contiguous(),)


def _const(op: OpInfo, k: int, what: str) -> np.ndarray:
    t = op.inputs[k] if k < len(op.inputs) else None
    if t is None or not t.is_const:
        raise op.fail(f"the {what} must be a constant")
    return np.asarray(t.data).reshape(-1)


@register("STRIDED_SLICE")
def build_strided_slice(op: OpInfo) -> SliceOp:
    x = op.inputs[0]
    dims = strided_slice_indices(op, x.shape, _const(op, 1, "begin"), _const(op, 2, "end"),
                                 _const(op, 3, "strides") if len(op.inputs) > 3 else [1] * x.rank)
    return SliceOp(op, dims)


@register("SLICE")
def build_slice(op: OpInfo) -> SliceOp:
    x = op.inputs[0]
    begin, size = _const(op, 1, "begin"), _const(op, 2, "size")
    dims = []
    for i, n in enumerate(x.shape):
        b = int(begin[i])
        s = n - b if int(size[i]) == -1 else int(size[i])
        dims.append((range(b, b + s), False))
    return SliceOp(op, dims)


class PadOp(EmulatedOp):
    def __init__(self, op: OpInfo, value: int):
        super().__init__(op)
        pads = _const(op, 1, "paddings").reshape(-1, 2)
        x = op.inputs[0]
        if len(pads) != x.rank or np.any(pads < 0):
            raise op.fail(f"paddings {pads.tolist()} do not fit {x.describe()}")
        self.pad = []
        for before, after in reversed(pads.tolist()):
            self.pad += [int(before), int(after)]
        self.value = value

    def forward(self, x, *_):
        if not any(self.pad):
            return (x,)
        return (F.pad(x, self.pad, value=self.value),)


@register("PAD")
def build_pad(op: OpInfo) -> PadOp:
    out = op.outputs[0]
    if out.dtype in (torch.int8, torch.uint8, torch.int16):
        return PadOp(op, out.zero_point)
    return PadOp(op, 0)


@register("PADV2")
def build_padv2(op: OpInfo) -> PadOp:
    value = _const(op, 2, "constant value")
    return PadOp(op, int(value[0]) if op.outputs[0].dtype != torch.float32 else float(value[0]))


class MirrorPadOp(EmulatedOp):
    def __init__(self, op: OpInfo):
        super().__init__(op)
        x = op.inputs[0]
        pads = _const(op, 1, "paddings").reshape(-1, 2)
        if len(pads) != x.rank or np.any(pads < 0):
            raise op.fail(f"paddings {pads.tolist()} do not fit {x.describe()}")
        symmetric = int(op.option("mode", 0)) == 1  # MirrorPadMode: REFLECT 0, SYMMETRIC 1
        self.index = []  # (dim of the [S, *shape] tensor, gather indices)
        for d, (before, after) in enumerate(pads.tolist()):
            if not before and not after:
                continue
            n = x.shape[d]
            edge = 0 if symmetric else 1
            if before + edge > n or after + edge > n:
                raise op.fail(f"paddings {pads.tolist()} exceed {x.describe()}")
            left = list(range(before - 1 + edge, edge - 1, -1))
            right = list(range(n - 1 - edge, n - 1 - edge - after, -1))
            idx = torch.tensor(left + list(range(n)) + right, dtype=torch.long)
            self.register_buffer(f"index_{d}", idx, persistent=False)
            self.index.append(d)

    def forward(self, x, *_):
        for d in self.index:
            x = x.index_select(d + 1, getattr(self, f"index_{d}"))
        return (x,)


register("MIRROR_PAD")(MirrorPadOp)


class SplitOp(EmulatedOp):
    def __init__(self, op: OpInfo):
        super().__init__(op)
        if op.name == "SPLIT":  # (axis, input)
            axis, x = _const(op, 0, "axis"), op.inputs[1]
            parts = int(op.option("numSplits", len(op.outputs)))
            if parts <= 0 or x.shape[int(axis[0]) % x.rank] % parts:
                raise op.fail(f"{x.describe()} does not split into {parts} equal parts")
            self.axis = int(axis[0]) % x.rank
            self.sizes = [x.shape[self.axis] // parts] * parts
        else:  # SPLIT_V (input, size_splits, axis)
            x = op.inputs[0]
            self.axis = int(_const(op, 2, "axis")[0]) % x.rank
            sizes = [int(v) for v in _const(op, 1, "size_splits")]
            if sizes.count(-1) == 1:
                sizes[sizes.index(-1)] = x.shape[self.axis] - sum(v for v in sizes if v != -1)
            if sum(sizes) != x.shape[self.axis] or any(v < 0 for v in sizes):
                raise op.fail(f"sizes {sizes} do not split {x.describe()} on axis {self.axis}")
            self.sizes = sizes
        if len(self.sizes) != len(op.outputs):
            raise op.fail(f"{len(self.sizes)} parts for {len(op.outputs)} outputs")

    def forward(self, *inputs):
        x = inputs[0]
        return tuple(p.contiguous() for p in torch.split(x, self.sizes, dim=self.axis + 1))


register("SPLIT", "SPLIT_V")(SplitOp)


class ConcatOp(EmulatedOp):
    def __init__(self, op: OpInfo):
        super().__init__(op)
        out = op.outputs[0]
        rank = out.rank
        self.axis = int(op.option("axis", 0)) % rank + 1
        if op.option("fusedActivationFunction", 0) not in (0, None):
            raise op.fail("CONCATENATION with a fused activation is not emulated")
        self.parts = []
        for k, t in enumerate(op.inputs):
            if out.dtype == torch.int8 and (t.scale != out.scale or t.zero_point != out.zero_point):
                raise op.fail(f"input {t.describe()} has other quantization parameters than the output; "
                              "LiteRT's int8 CONCATENATION refuses that (ENSURE_EQ in Prepare)")
            if t.is_const:
                self.register_buffer(f"const{k}", torch.from_numpy(np.ascontiguousarray(t.data))[None])
                self.parts.append(f"const{k}")
            else:
                self.parts.append(None)

    def forward(self, *xs):
        it = iter(xs)
        samples = xs[0].shape[0] if xs else 1
        tensors = []
        for name in self.parts:
            if name is None:
                tensors.append(next(it))
            else:
                c = getattr(self, name)
                tensors.append(c.expand(samples, *c.shape[1:]))
        return (torch.cat(tensors, dim=self.axis),)


register("CONCATENATION")(ConcatOp)


class DepthToSpaceOp(EmulatedOp):
    """DEPTH_TO_SPACE / SPACE_TO_DEPTH (NHWC, TensorFlow's DCR order): ``depth[(i * bs + j) * C + c]``
    is ``space[h * bs + i, w * bs + j, c]``."""

    def __init__(self, op: OpInfo, to_space: bool):
        super().__init__(op)
        self.block = int(op.option("blockSize", 1))
        self.to_space = to_space
        self.out_shape = op.outputs[0].shape

    def forward(self, x):
        s, n, h, w, c = x.shape
        bs = self.block
        if self.to_space:
            y = x.reshape(s, n, h, w, bs, bs, c // (bs * bs)).permute(0, 1, 2, 4, 3, 5, 6)
        else:
            y = x.reshape(s, n, h // bs, bs, w // bs, bs, c).permute(0, 1, 2, 4, 3, 5, 6)
        return (y.reshape(s, *self.out_shape),)


register("DEPTH_TO_SPACE")(lambda op: DepthToSpaceOp(op, True))
register("SPACE_TO_DEPTH")(lambda op: DepthToSpaceOp(op, False))
