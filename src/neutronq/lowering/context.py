"""The state of one partition's conversion to TFLite, and the helpers op converters share.

Layout: a value is stored in the layout its producer chose (``TRef.perm``). ``act`` gives it
in the canonical layout (``layout.canonical_perm``: channels last for rank >= 3), adding a
TRANSPOSE once per value when it is stored otherwise, so an op that reads ``act`` sees what it
always saw. Ops that can work in any layout (element-wise ops, matmul, softmax over a stored
axis, data movement) read ``stored`` / ``in_layout`` and keep their input's layout: a chain of
them on a tensor that is not an image (attention's [B, heads, L, L] scores) then needs no
transposes. A quantized constant used as an activation (a position embedding, LayerNorm's
gamma) becomes an int8 constant tensor in whatever layout its user asks for.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from torch.fx import Node

from neutronq.backend.scheme import BIAS_QMAX
from neutronq.fx import node_op, tensor_val
from neutronq.lowering.edge import constant_value, dq_params, is_dq_of_constant, output_qparams
from neutronq.lowering.layout import canonical_perm, is_memory_noop, same_byte_order, stored_shape, transpose_to
from neutronq.lowering.tflite_builder import QParams, TFLiteBuilder, tfl

__all__ = ["TRef", "QConst", "ConversionContext", "LoweringError"]

log = logging.getLogger(__name__)


class LoweringError(RuntimeError):
    """A delegated node that the TFLite conversion cannot express (a partitioner bug)."""


@dataclass(frozen=True)
class TRef:
    """A PyTorch value held by a TFLite tensor."""

    index: int
    shape: tuple[int, ...]  # PyTorch shape
    perm: tuple[int, ...]  # stored axis i holds PyTorch dim perm[i]
    qparams: QParams

    @property
    def scale(self) -> float:
        return self.qparams.scale[0]

    @property
    def zero_point(self) -> int:
        return self.qparams.zero_point[0]


@dataclass(frozen=True)
class QConst:
    """A quantized constant in PyTorch layout: integer data, scales, zero points, axis."""

    data: np.ndarray
    scales: np.ndarray
    zero_points: np.ndarray
    axis: int

    @property
    def per_channel(self) -> bool:
        return self.scales.size > 1


class ConversionContext:
    """Maps graph nodes to TFLite tensors while op converters emit operators."""

    def __init__(self, ep, builder: TFLiteBuilder):
        self.ep = ep
        self.b = builder
        self.values: dict[Node, TRef] = {}
        self.done: set[Node] = set()
        self._layouts: dict[tuple, TRef] = {}  # (node, perm) -> the value in that layout

    # --- inputs of an op ---------------------------------------------------------------------
    def stored(self, node: Node) -> TRef:
        """The int8 tensor of ``node`` as it is stored (any layout, ``TRef.perm``)."""
        if node not in self.values:
            if is_dq_of_constant(node, self.ep):
                return self.in_layout(node, canonical_perm(len(self.out_shape(node))))
            raise LoweringError(f"node {node.name} ({node_op(node)}) has no int8 tensor in the partition")
        return self.values[node]

    def act(self, node: Node) -> TRef:
        """The int8 tensor of ``node`` in the canonical layout (channels last for rank >= 3)."""
        return self.in_layout(node, canonical_perm(len(self.out_shape(node))))

    def in_layout(self, node: Node, perm: Sequence[int]) -> TRef:
        """The int8 tensor of ``node`` stored as ``perm`` (a TRANSPOSE the first time it is asked
        for in a layout it is not stored in; a constant is written in that layout)."""
        perm = tuple(int(p) for p in perm)
        key = (node, perm)
        if key in self._layouts:
            return self._layouts[key]
        if node not in self.values and is_dq_of_constant(node, self.ep):
            t = self._activation_constant(node, perm)
        else:
            t = self.stored(node)
            if t.perm != perm and stored_shape(t.shape, perm) == list(self.b.shape_of(t.index)) \
                    and same_byte_order(t.shape, t.perm, t.shape, perm):
                t = TRef(t.index, t.shape, perm, t.qparams)  # the same bytes: only the label changes
            elif t.perm != perm:
                out = self.new_tensor(t.shape, t.qparams, f"{node.name}_as{''.join(map(str, perm))}", perm=perm)
                self.relayout(t.index, self.b.shape_of(t.index), [("transpose", transpose_to(t.perm, perm))],
                              t.qparams, f"{node.name}_relayout", dst=out.index)
                t = out
        self._layouts[key] = t
        return t

    def constant_as(self, node: Node, shape: Sequence[int], perm: Sequence[int]) -> TRef:
        """The dequantized constant ``node`` viewed as ``shape`` (e.g. with leading 1s for a
        broadcast), written stored as ``perm``."""
        return self._activation_constant(node, tuple(int(p) for p in perm), tuple(int(d) for d in shape))

    def _activation_constant(self, node: Node, perm: tuple, shape: Optional[tuple] = None) -> TRef:
        """A dequantized constant read as an activation (per-tensor int8, any zero point)."""
        scales, zps, _ = dq_params(node, self.ep)
        if scales.size != 1:
            raise LoweringError(f"{node.name}: a per-channel constant used as an activation")
        data = constant_value(node.args[0], self.ep).detach().cpu()
        if data.dtype != torch.int8:
            raise LoweringError(f"{node.name}: the constant is {data.dtype}, not int8")
        shape = tuple(int(d) for d in data.shape) if shape is None else shape
        qp = QParams.per_tensor(float(scales[0]), int(zps[0]))
        stored = np.ascontiguousarray(np.transpose(data.numpy().reshape(shape), perm))
        idx = self.b.tensor(stored_shape(shape, perm), np.int8, qp, node.name, stored.astype(np.int8))
        return TRef(idx, shape, perm, qp)

    def qconst(self, node: Node) -> QConst:
        """The quantized constant behind ``dequantize(constant)`` (optionally ``permute_copy``'d)."""
        if node_op(node) == "aten.permute_copy.default":
            inner = self.qconst(node.args[0])
            dims = [int(d) % inner.data.ndim for d in node.args[1]]
            axis = dims.index(inner.axis) if inner.per_channel else 0
            return QConst(np.transpose(inner.data, dims), inner.scales, inner.zero_points, axis)
        if not is_dq_of_constant(node, self.ep):
            raise LoweringError(f"node {node.name} ({node_op(node)}) is not a quantized constant")
        scales, zps, axis = dq_params(node, self.ep)
        if node.args[0].meta.get("val") is not None and tensor_val(node.args[0]).dtype == torch.int8 and (zps != 0).any():
            raise LoweringError(f"{node.name}: int8 weights must be symmetric (zero point 0), got {zps}")
        data = constant_value(node.args[0], self.ep).detach().cpu().numpy()
        return QConst(data, scales, zps, axis)

    def out_qparams(self, node: Node) -> QParams:
        qp = output_qparams(node)
        if qp is None:
            raise LoweringError(f"the output of {node.name} ({node_op(node)}) is never quantized to int8")
        return QParams.per_tensor(*qp)

    @staticmethod
    def out_shape(node: Node) -> tuple[int, ...]:
        val = tensor_val(node)
        return tuple(int(d) for d in val.shape)

    # --- tensors -------------------------------------------------------------------------------
    def new_tensor(self, shape: Sequence[int], qparams: QParams, name: str = "",
                   perm: Optional[Sequence[int]] = None) -> TRef:
        """An int8 tensor for a PyTorch value of ``shape``, stored as ``perm`` (default: the
        canonical layout)."""
        perm = canonical_perm(len(shape)) if perm is None else tuple(int(p) for p in perm)
        idx = self.b.tensor(stored_shape(shape, perm), np.int8, qparams, name)
        return TRef(idx, tuple(shape), perm, qparams)

    def output(self, node: Node, name: Optional[str] = None, perm: Optional[Sequence[int]] = None) -> TRef:
        """A new tensor for the value of ``node``, with the parameters it is quantized with
        (stored as ``perm``, default canonical)."""
        return self.new_tensor(self.out_shape(node), self.out_qparams(node), name or node.name, perm)

    def scratch(self, stored: Sequence[int], qparams: QParams, name: str) -> int:
        return self.b.tensor(stored, np.int8, qparams, name)

    # --- layout ------------------------------------------------------------------------------
    def relayout(self, src: int, stored_src: Sequence[int], steps: list, qparams: QParams,
                 name: str, dst: Optional[int] = None) -> int:
        """Apply ``steps`` (("transpose", perm) | ("reshape", shape)) to stored tensor ``src``.

        Transposes that keep the bytes in order become reshapes, consecutive reshapes merge; the
        last op writes ``dst`` when given. Returns the index of the result.
        """
        if _keeps_byte_order(stored_src, steps):  # e.g. [N, L, C] -> [N, 1, L, C] through torch order
            steps = [("reshape", _final_shape(stored_src, steps))]
        ops: list = []
        shape = list(stored_src)
        for kind, arg in steps:
            if kind == "transpose":
                new_shape = [shape[a] for a in arg]
                if is_memory_noop(shape, arg) or list(arg) == sorted(arg):
                    ops.append(("reshape", new_shape))
                else:
                    ops.append(("transpose", list(arg)))
                shape = new_shape
            else:
                shape = [int(d) for d in arg]
                ops.append(("reshape", shape))
        merged: list = []
        for op in ops:
            if op[0] == "reshape" and merged and merged[-1][0] == "reshape":
                merged[-1] = op
            else:
                merged.append(op)
        cur_shape = list(stored_src)
        kept = []
        for op in merged:  # drop reshapes to the shape the tensor already has
            if not (op[0] == "reshape" and op[1] == cur_shape):
                kept.append(op)
            cur_shape = op[1] if op[0] == "reshape" else [cur_shape[a] for a in op[1]]
        cur, cur_shape = src, list(stored_src)
        for i, (kind, arg) in enumerate(kept):
            last = i == len(kept) - 1
            if kind == "transpose":
                out_shape = [cur_shape[a] for a in arg]
                out = dst if (last and dst is not None) else self.scratch(out_shape, qparams, f"{name}_t{i}")
                self.b.op("TRANSPOSE", [cur, self.b.const_int32(arg, f"{name}_perm{i}")], [out],
                          tfl.TransposeOptionsT())
            else:
                out_shape = list(arg)
                out = dst if (last and dst is not None) else self.scratch(out_shape, qparams, f"{name}_r{i}")
                opts = tfl.ReshapeOptionsT()
                opts.newShape = out_shape
                self.b.op("RESHAPE", [cur, self.b.const_int32(out_shape, f"{name}_shape{i}")], [out], opts)
            cur, cur_shape = out, out_shape
        if dst is not None and cur != dst:  # nothing to do but the result must be dst: copy
            opts = tfl.ReshapeOptionsT()
            opts.newShape = list(cur_shape)
            self.b.op("RESHAPE", [cur, self.b.const_int32(cur_shape, f"{name}_shape")], [dst], opts)
            cur = dst
        return cur

    def to_torch_order_steps(self, t: TRef) -> list:
        return [("transpose", transpose_to(t.perm, range(len(t.shape))))]

    def view(self, t: TRef, new_shape: Sequence[int], qparams: Optional[QParams] = None,
             name: str = "view", dst: Optional[TRef] = None, perm: Optional[Sequence[int]] = None) -> TRef:
        """The PyTorch ``view`` of ``t`` as ``new_shape``, stored as ``perm`` (default: ``dst``'s
        layout, else canonical)."""
        qparams = qparams or t.qparams
        new_shape = tuple(int(d) for d in new_shape)
        if dst is not None:
            perm_out = dst.perm
        else:
            perm_out = canonical_perm(len(new_shape)) if perm is None else tuple(int(p) for p in perm)
        if same_byte_order(t.shape, t.perm, new_shape, perm_out):
            steps = [("reshape", stored_shape(new_shape, perm_out))]
        else:
            steps = self.to_torch_order_steps(t)
            steps.append(("reshape", list(new_shape)))
            steps.append(("transpose", list(perm_out)))
        out = dst or self.new_tensor(new_shape, qparams, name, perm=perm_out)
        self.relayout(t.index, stored_shape(t.shape, t.perm), steps, qparams, name, dst=out.index)
        return out

    def free_view(self, t: TRef, new_shape: Sequence[int], name: str = "view") -> TRef:
        """The PyTorch ``view`` of ``t`` as ``new_shape`` in a layout that keeps the bytes where
        they are (a RESHAPE at most) when there is one: the canonical layout, PyTorch's order,
        or another order of the dims; otherwise canonical when ``t`` is an image (rank >= 3,
        channels last), else PyTorch's order (one TRANSPOSE)."""
        new_shape = tuple(int(d) for d in new_shape)
        rank = len(new_shape)
        canonical, identity = canonical_perm(rank), tuple(range(rank))
        image = len(t.shape) >= 3 and t.perm == canonical_perm(len(t.shape))
        first = (canonical, identity) if image else (identity, canonical)
        candidates = list(dict.fromkeys([*first, *itertools.permutations(range(rank))])) if rank <= 4 \
            else list(dict.fromkeys(first))
        for perm in candidates:
            if same_byte_order(t.shape, t.perm, new_shape, perm):
                if stored_shape(new_shape, perm) == list(self.b.shape_of(t.index)):
                    return TRef(t.index, new_shape, tuple(perm), t.qparams)  # nothing to do
                return self.view(t, new_shape, name=name, perm=perm)
        return self.view(t, new_shape, name=name, perm=first[0])

    def permuted(self, t: TRef, dims: Sequence[int]) -> TRef:
        """``t.permute(dims)`` with no operator: the same stored tensor, read through a new perm."""
        rank = len(t.shape)
        dims = [int(d) % rank for d in dims]
        # stored axis i holds input dim t.perm[i], which is output dim dims.index(t.perm[i])
        return TRef(t.index, tuple(t.shape[d] for d in dims), tuple(dims.index(p) for p in t.perm), t.qparams)

    def requantize(self, t: TRef, qparams: QParams, name: str) -> TRef:
        """``t`` with ``qparams`` (a QUANTIZE when they differ); the layout is kept."""
        if t.qparams == qparams:
            return t
        out = TRef(self.b.tensor(self.b.shape_of(t.index), np.int8, qparams, name), t.shape, t.perm, qparams)
        self.b.op("QUANTIZE", [t.index], [out.index])
        return out

    # --- constants -----------------------------------------------------------------------------
    def int8_weights(self, data: np.ndarray, qc: QConst, axis: int, name: str) -> int:
        """An int8 weight tensor, per tensor or per axis ``axis`` (of the given data layout)."""
        qp = QParams(tuple(float(s) for s in qc.scales), tuple(int(z) for z in qc.zero_points),
                     axis if qc.per_channel else 0)
        return self.b.tensor(data.shape, np.int8, qp, name, data.astype(np.int8))

    @staticmethod
    def _bias_with_headroom(values: np.ndarray, weight: QConst, channels: int, name: str) -> np.ndarray:
        """int32 bias values that leave the accumulator room for the products.

        The NPU's and TFLite's int32 sum of bias and products wraps on overflow; a bias near the
        int32 limits (a dead channel with a tiny weight scale, from a quantizer without a bias-safe
        weight scale floor) is clamped so that no sum can wrap, and the user is told."""
        products = 255 * 127 * (weight.data.size // max(channels, 1))  # |x - zp| <= 255, |w| <= 127
        limit = 2**31 - 1 - products
        clamped = np.abs(values) > limit
        if clamped.any():
            log.warning(
                "%s: the int32 bias of output channel(s) %s does not fit beside the accumulator "
                "(|bias| > %d); clamped. The weight scale of those channels is too small for their "
                "bias (all-zero weights after BatchNorm folding?); NeutronQuantizer's per-channel "
                "weight observers floor it (quantizer.specs.bias_safe_weight_scale).",
                name, np.flatnonzero(clamped)[:8].tolist(), limit)
        return np.clip(values, -limit, limit).astype(np.int32)

    @staticmethod
    def _warn_saturated(bias: QConst, name: str) -> None:
        """A PT2E bias at the limit of its quantization range was saturated when it was quantized
        (the float bias did not fit its scale): the program adds the saturated value, as the
        ``convert_pt2e`` model does. Said once per layer."""
        if bias.data.dtype != np.int32:
            return
        saturated = np.abs(bias.data.astype(np.int64).reshape(-1)) >= BIAS_QMAX
        if saturated.any():
            log.warning(
                "%s: the int32 bias of output channel(s) %s is saturated at +-%d (its float value does not "
                "fit the scale input x weight): that output is wrong by the excess, in the convert_pt2e "
                "model and in the lowered program alike. The weight scale is too small for the bias; "
                "NeutronQuantizer floors it when it sees the bias at annotation (a bias changed after "
                "prepare_pt2e is not seen).", name, np.flatnonzero(saturated)[:8].tolist(), BIAS_QMAX)

    def int32_bias(self, bias: Optional[QConst], input_scale: float, weight: QConst,
                   channels: int, name: str) -> int:
        """An int32 bias of scale input x weight (per channel when the weights are), zero point 0.

        The PT2E bias is re-expressed in that scale when its own differs (it can after QAT)."""
        w_scales = np.broadcast_to(weight.scales.astype(np.float64), (channels,)) if weight.per_channel \
            else np.full((channels,), float(weight.scales[0]))
        scales = (np.float32(input_scale) * w_scales.astype(np.float32)).astype(np.float64)
        if bias is None:
            values = np.zeros((channels,), np.int32)
        else:
            self._warn_saturated(bias, name)
            real = bias.data.astype(np.float64).reshape(-1) * np.broadcast_to(bias.scales, (channels,))
            values = self._bias_with_headroom(np.round(real / scales), weight, channels, name)
        per_axis = weight.per_channel
        qp = QParams(tuple(float(s) for s in (scales if per_axis else scales[:1])),
                     tuple(0 for _ in range(channels if per_axis else 1)), 0)
        return self.b.tensor((channels,), np.int32, qp, name, values)


def _final_shape(stored: Sequence[int], steps: list) -> list[int]:
    shape = [int(d) for d in stored]
    for kind, arg in steps:
        shape = [shape[a] for a in arg] if kind == "transpose" else [int(d) for d in arg]
    return shape


def _keeps_byte_order(stored: Sequence[int], steps: list) -> bool:
    """Whether ``steps`` as a whole leave the elements in their stored order (one RESHAPE does
    them), checked on the index of every element."""
    idx = np.arange(int(np.prod(stored, dtype=np.int64))).reshape([int(d) for d in stored])
    for kind, arg in steps:
        idx = idx.transpose(arg) if kind == "transpose" else idx.reshape([int(d) for d in arg])
    return bool((idx.reshape(-1) == np.arange(idx.size)).all())
