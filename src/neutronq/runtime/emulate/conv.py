"""CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, TRANSPOSE_CONV, BATCH_MATMUL (int8).

Reference semantics (``reference_integer_ops::ConvPerChannel`` / ``DepthwiseConvPerChannel``):
``acc = sum over in-bounds taps of w * (x - zp_in)`` (padding taps are skipped, which is padding
``x`` with ``zp_in``), ``+ bias``, then ``MultiplyByQuantizedMultiplier`` per output channel with
``QuantizeMultiplier(double(s_in) * double(s_w[c]) / double(s_out))`` (double arithmetic; a
per-tensor filter scale is broadcast to every channel), ``+ zp_out``, clamped to the fused
activation's range. SAME padding puts ``total // 2`` before (``ComputePaddingHeightWidth``).
DEPTHWISE_CONV_2D's channel multiplier is ``filter channels / input channels`` (the option is
not read). Grouped CONV_2D (filter depth < input depth) is supported as the reference does.

The accumulation here, always on the raw int8 input padded with ``zp_in`` (so that
``sum(w * (x - zp_in)) = sum(w * x) - zp_in * sum(w)`` and ``bias' = bias - zp_in * sum(w)``):

* ungrouped convolutions: an int8 GEMM, ``torch._int_mm`` (int32 results, exact) on the im2col
  matrix (for 1x1 kernels the input itself), the bias added in the requantization;
* depthwise and grouped ones (and ungrouped ones where ``_int_mm`` does not take the sizes): the
  input converted to float into a scratch buffer, ``F.conv2d`` (channels-last) with bias
  ``bias'``. Every partial sum is an integer bounded by ``|bias'| + 128 * sum|w[c]|``; when that
  bound is below 2^24 for every channel the float32 convolution is exact in any summation
  order, otherwise it runs in float64 (exact below 2^53).

The integers then go to ``Requantizer``. (oneDNN's float32 convolution in PyTorch 2.13 returns
wrong values for single-channel inputs with one output column and a stride above 1; such a dim
is cropped to its one window and given stride 1, which computes the same thing.)

FULLY_CONNECTED (LiteRT >= 2.2, ``reference_integer_ops::FullyConnected[PerChannel]``): the
reference kernel requantizes in double with a single rounding,
``round(double(acc) * (double(s_in) * double(s_w) / double(s_out)))`` (``round``: half away from
zero), not with ``MultiplyByQuantizedMultiplier``. Filter zero points are honoured.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from ai_edge_litert import schema_py_generated as tfl

from neutronq.runtime.emulate.base import EmulatedOp, OpInfo, activation_range, flat, register, unflat
from neutronq.runtime.emulate.fixedpoint import f32, quantize_multiplier, round_half_away_tensor
from neutronq.runtime.emulate.requantize import Requantizer
from neutronq.runtime.emulate.scratch import scratch_or_new

__all__ = ["ConvOp", "FullyConnectedOp", "FLOAT32_EXACT", "same_padding"]

FLOAT32_EXACT = 2**24


def same_padding(size: int, kernel: int, stride: int, dilation: int, out: int) -> tuple[int, int]:
    """(before, after) padding of TFLite's SAME, after being what the last window needs."""
    eff = (kernel - 1) * dilation + 1
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


def _per_channel_scales(op: OpInfo, w, channels: int) -> np.ndarray:
    scales = np.asarray(w.scales, np.float32)
    if scales.size == 1:
        return np.repeat(scales, channels)
    if scales.size != channels:
        raise op.fail(f"{w.describe()} has {scales.size} scales for {channels} output channels")
    return scales


def _bias(op: OpInfo, channels: int) -> np.ndarray:
    b = op.inputs[2] if len(op.inputs) > 2 else None
    if b is None:
        return np.zeros(channels, np.int64)
    if not b.is_const:
        raise op.fail("a non-constant bias is not emulated")
    if b.data.dtype not in (np.int32, np.int64):
        raise op.fail(f"bias {b.describe()} is not int32")
    return b.data.reshape(-1).astype(np.int64)


def _accumulation_dtype(bound: int) -> torch.dtype:
    return torch.float32 if bound < FLOAT32_EXACT else torch.float64


# tests set it False to check the float convolution path of ungrouped convolutions too
USE_INT_MM = True
# accumulator elements computed and requantized at a time (rows of the GEMM, whole images of a
# float convolution) when PyTorch runs single threaded: small enough for the int32 / float block
# to stay in cache. With several threads every block is a parallel region of its own, whose
# barriers cost more than the cache saves (measured on a loaded 2-core machine): one block then.
BLOCK_ELEMENTS = 1 << 19


def _block_elements() -> int:
    return BLOCK_ELEMENTS if torch.get_num_threads() == 1 else 1 << 62


def int_mm_ok(device: torch.device, rows: int, depth: int, cols: int) -> bool:
    """Whether ``torch._int_mm`` (int8 x int8 -> int32, exact) takes these sizes on ``device``:
    any on CPU; on CUDA more than 16 rows and depths and columns that are multiples of 8."""
    if not USE_INT_MM:
        return False
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        return rows > 16 and depth % 8 == 0 and cols % 8 == 0
    return False


class ConvOp(EmulatedOp):
    """CONV_2D / DEPTHWISE_CONV_2D on ``[S*N, H, W, C]`` int8 (NHWC).

    Two exact accumulations: an int8 GEMM (``torch._int_mm``, int32 results) over the int8
    im2col matrix of the zero-point-padded input, for ungrouped convolutions (a 1x1 convolution
    needs no im2col copy), and otherwise (depthwise, grouped, or where ``_int_mm`` does not take
    the sizes) a float convolution of the input converted into a scratch buffer (see the module
    docstring for its exactness bound)."""

    def __init__(self, op: OpInfo, weight_oihw: np.ndarray, bias: np.ndarray, groups: int, stride, dilation,
                 padding, requant: Requantizer, acc_dtype: torch.dtype, zp_in: int, out_hw=(0, 0)):
        super().__init__(op)
        self.register_buffer("weight", torch.from_numpy(weight_oihw.astype(np.float32))
                             .to(acc_dtype).contiguous(memory_format=torch.channels_last))
        self.register_buffer("bias", torch.from_numpy(bias.astype(np.float64)).to(acc_dtype))
        self.register_buffer("bias64", torch.from_numpy(bias.astype(np.float64)))
        self.gemm = groups == 1
        if self.gemm:  # [KH * KW * C_in, C_out], rows in the (kh, kw, c) order of the im2col matrix
            w_khwc = weight_oihw.transpose(0, 2, 3, 1).reshape(weight_oihw.shape[0], -1)
            self.register_buffer("weight_i8", torch.from_numpy(np.ascontiguousarray(w_khwc.T).astype(np.int8)))
        self.groups, self.dilation = groups, tuple(dilation)
        self.kernel = tuple(weight_oihw.shape[2:])
        self.pad = tuple(padding)  # (left, right, top, bottom)
        self.out_hw = tuple(out_hw)
        self.stride_in = tuple(stride)
        # One output along a dim: the window starts at 0 whatever the stride. oneDNN's float32
        # convolution (PyTorch 2.13, CPU) returns wrong values for single-channel inputs with one
        # output column and a stride > 1, so such a dim is cropped to the window, stride 1.
        stride = list(stride)
        crop = [None, None]
        for d in range(2):
            if out_hw[d] == 1:
                stride[d] = 1
                crop[d] = (self.kernel[d] - 1) * self.dilation[d] + 1
        self.stride = tuple(stride)
        self.crop = None if crop == [None, None] else tuple(c if c is not None else 2**62 for c in crop)
        self.requant = requant
        self.acc_dtype = acc_dtype
        self.zp_in = zp_in
        self.scratch = None  # set by TFLiteModule

    def _padded(self, x: torch.Tensor, dtype: torch.dtype, tag: str) -> torch.Tensor:
        """``x`` padded with the input zero point, as ``dtype``, in a scratch buffer."""
        left, right, top, bottom = self.pad
        if not any(self.pad) and dtype == x.dtype:
            return x
        n, h, w, c = x.shape
        buf = scratch_or_new(self.scratch, tag, (n, h + top + bottom, w + left + right, c), dtype, x.device)
        if top:
            buf[:, :top].fill_(self.zp_in)
        if bottom:
            buf[:, top + h:].fill_(self.zp_in)
        if left:
            buf[:, top:top + h, :left].fill_(self.zp_in)
        if right:
            buf[:, top:top + h, left + w:].fill_(self.zp_in)
        buf[:, top:top + h, left:left + w].copy_(x)
        return buf

    def _gemm(self, x: torch.Tensor) -> torch.Tensor:
        """Row blocks of the int8 GEMM, each requantized while its int32 block is in cache."""
        xp = self._padded(x, torch.int8, "conv_pad_i8")
        n, hp, wp, c = xp.shape
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, self.stride_in, self.dilation
        oh, ow = self.out_hw
        cout = self.weight_i8.shape[1]
        out = torch.empty((n, oh, ow, cout), dtype=torch.int8, device=x.device)
        out_rows = out.view(n * oh * ow, cout)
        if (kh, kw) == (1, 1):
            cols = xp[:, :(oh - 1) * sh + 1:sh, :(ow - 1) * sw + 1:sw]
            rows = cols.reshape(n * oh * ow, c)
            step = max(1, _block_elements() // cout)
            for i in range(0, rows.shape[0], step):
                acc = torch._int_mm(rows[i:i + step], self.weight_i8)
                self.requant(acc, self.bias64, out=out_rows[i:i + step])
            return out
        sn, sh_, sw_, sc = xp.stride()
        windows = xp.as_strided((n, oh, ow, kh, kw, c), (sn, sh_ * sh, sw_ * sw, sh_ * dh, sw_ * dw, sc))
        per_image = oh * ow
        images = max(1, _block_elements() // (per_image * cout))
        for i in range(0, n, images):
            j = min(n, i + images)
            block = scratch_or_new(self.scratch, "im2col", (j - i, oh, ow, kh, kw, c), torch.int8, x.device)
            block.copy_(windows[i:j])
            acc = torch._int_mm(block.view((j - i) * per_image, kh * kw * c), self.weight_i8)
            self.requant(acc, self.bias64, out=out_rows[i * per_image:j * per_image])
        return out

    def forward(self, x):
        samples = x.shape[0]
        x = flat(x)
        if self.gemm and int_mm_ok(x.device, x.shape[0] * self.out_hw[0] * self.out_hw[1],
                                   self.weight_i8.shape[0], self.weight_i8.shape[1]):
            return (unflat(self._gemm(x), samples),)
        n = x.shape[0]
        out = torch.empty((n, *self.out_hw, self.weight.shape[0]), dtype=torch.int8, device=x.device)
        per_image = self.out_hw[0] * self.out_hw[1] * self.weight.shape[0]
        images = max(1, _block_elements() // per_image)
        for i in range(0, n, images):  # image blocks: each accumulator block requantized in cache
            xf = self._padded(x[i:i + images], self.acc_dtype, "conv_in")
            if self.crop is not None:
                xf = xf[:, :self.crop[0], :self.crop[1]]
            acc = F.conv2d(xf.permute(0, 3, 1, 2), self.weight, self.bias, self.stride, 0, self.dilation,
                           self.groups)
            self.requant(acc.permute(0, 2, 3, 1), out=out[i:i + images])
        return (unflat(out, samples),)


def _conv_common(op: OpInfo, weight_oihw: np.ndarray, groups: int) -> ConvOp:
    x, w = op.inputs[0], op.inputs[1]
    out = op.outputs[0]
    op.require_int8(x, w, out)
    if not w.is_const:
        raise op.fail("non-constant weights are not emulated")
    if x.rank != 4:
        raise op.fail(f"input {x.describe()} is not rank 4")
    channels = weight_oihw.shape[0]
    kh, kw = weight_oihw.shape[2:]
    stride = (op.option("strideH", 1), op.option("strideW", 1))
    dilation = (op.option("dilationHFactor", 1), op.option("dilationWFactor", 1))
    h, wd = x.shape[1:3]
    oh, ow = out.shape[1:3]
    if op.option("padding") == tfl.Padding.SAME:
        top, bottom = same_padding(h, kh, stride[0], dilation[0], oh)
        left, right = same_padding(wd, kw, stride[1], dilation[1], ow)
    else:
        top = left = 0
        bottom = max((oh - 1) * stride[0] + (kh - 1) * dilation[0] + 1 - h, 0)
        right = max((ow - 1) * stride[1] + (kw - 1) * dilation[1] + 1 - wd, 0)
    zp_in = x.zero_point
    w_zp = np.asarray(w.zero_points if w.zero_points is not None else [0], np.int64)
    if np.any(w_zp != 0):
        raise op.fail("int8 conv weights with a nonzero zero point are not emulated")
    w64 = weight_oihw.astype(np.int64)
    w_sum = w64.reshape(channels, -1).sum(1)
    bias = _bias(op, channels) - zp_in * w_sum
    bound = np.abs(bias) + 128 * np.abs(w64).reshape(channels, -1).sum(1)
    s_in, s_out = float(x.scale), float(out.scale)
    ms = [quantize_multiplier(s_in * float(s) / s_out) for s in _per_channel_scales(op, w, channels)]
    lo, hi = activation_range(op, out)
    requant = Requantizer([m for m, _ in ms], [s for _, s in ms], bound, out.zero_point, lo, hi)
    return ConvOp(op, weight_oihw, bias, groups, stride, dilation, (left, right, top, bottom), requant,
                  _accumulation_dtype(int(bound.max(initial=0))), zp_in, (oh, ow))


@register("CONV_2D")
def build_conv2d(op: OpInfo) -> ConvOp:
    w = op.inputs[1]
    ohwi = w.data.astype(np.int8)
    groups = op.inputs[0].shape[3] // ohwi.shape[3]
    if groups * ohwi.shape[3] != op.inputs[0].shape[3]:
        raise op.fail("input depth is not a multiple of the filter depth")
    return _conv_common(op, np.ascontiguousarray(ohwi.transpose(0, 3, 1, 2)), groups)


@register("DEPTHWISE_CONV_2D")
def build_depthwise(op: OpInfo) -> ConvOp:
    w = op.inputs[1]
    cin = op.inputs[0].shape[3]
    filt = w.data.astype(np.int8)  # [1, KH, KW, C_out], C_out = C_in * multiplier
    cout = filt.shape[3]
    if cout % cin:
        raise op.fail(f"filter channels {cout} are not a multiple of input channels {cin}")
    oihw = np.ascontiguousarray(filt[0].transpose(2, 0, 1)[:, None])
    return _conv_common(op, oihw, cin)


class FullyConnectedOp(EmulatedOp):
    """FULLY_CONNECTED: the int32 accumulators by ``torch._int_mm`` when the (zero-point
    corrected) weights are int8, else by an exact float matmul; then the double requantization."""

    def __init__(self, op: OpInfo, weight: np.ndarray, bias: np.ndarray, eff: np.ndarray, zp_out: int,
                 lo: int, hi: int, acc_dtype: torch.dtype, out_shape: tuple):
        super().__init__(op)
        self.register_buffer("weight_t", torch.from_numpy(weight.T.astype(np.float32)).to(acc_dtype)
                             .contiguous())
        self.int8_weights = bool(weight.min(initial=0) >= -128 and weight.max(initial=0) <= 127)
        if self.int8_weights:
            self.register_buffer("weight_i8", torch.from_numpy(np.ascontiguousarray(weight.T).astype(np.int8)))
        self.register_buffer("bias", torch.from_numpy(bias.astype(np.float64)))
        self.register_buffer("eff", torch.from_numpy(eff.astype(np.float64)))
        self.zp_out, self.lo, self.hi = zp_out, lo, hi
        self.acc_dtype = acc_dtype
        self.out_shape = tuple(out_shape)
        self.depth = weight.shape[1]

    def forward(self, x):
        samples = x.shape[0]
        rows = x.reshape(-1, self.depth)
        if self.int8_weights and int_mm_ok(x.device, rows.shape[0], self.depth, self.weight_i8.shape[1]):
            acc = torch._int_mm(rows.contiguous(), self.weight_i8).to(torch.float64) + self.bias
        else:
            acc = (rows.to(self.acc_dtype) @ self.weight_t).to(torch.float64) + self.bias
        y = round_half_away_tensor(acc * self.eff) + self.zp_out
        y = y.clamp_(self.lo, self.hi).to(torch.int8)
        return (y.reshape(samples, *self.out_shape),)


@register("FULLY_CONNECTED")
def build_fully_connected(op: OpInfo) -> FullyConnectedOp:
    x, w = op.inputs[0], op.inputs[1]
    out = op.outputs[0]
    op.require_int8(x, w, out)
    if not w.is_const:
        raise op.fail("non-constant weights are not emulated")
    if op.option("weightsFormat", 0) != 0:
        raise op.fail("shuffled weights are not emulated")
    wt = w.data.astype(np.int64).reshape(w.shape[0], -1)
    units, depth = wt.shape
    w_zp = np.asarray(w.zero_points if w.zero_points is not None else [0], np.int64)
    if w_zp.size > 1 and np.any(w_zp != 0):
        raise op.fail("per-channel weight zero points are not emulated")
    wt = wt - int(w_zp[0])  # filter_val + filter_offset
    zp_in = x.zero_point
    bias = _bias(op, units) - zp_in * wt.sum(1)
    bound = 128 * np.abs(wt).sum(1)
    s_in, s_out = float(x.scale), float(out.scale)
    eff = np.array([s_in * float(s) / s_out for s in _per_channel_scales(op, w, units)], np.float64)
    lo, hi = activation_range(op, out)
    return FullyConnectedOp(op, wt, bias, eff, out.zero_point, lo, hi,
                            _accumulation_dtype(int(bound.max(initial=0))), out.shape)


class TransposeConvOp(EmulatedOp):
    """TRANSPOSE_CONV (``reference_integer_ops::TransposeConv``): every input tap ``x - zp_in``
    scattered through the filter (``[C_out, KH, KW, C_in]``) into an int32 scratch at
    ``in * stride - pad + k`` (``pad``: ``ComputePaddingHeightWidth`` with the output as the
    "input" size; taps outside the output are dropped), then bias and the per-channel
    ``MultiplyByQuantizedMultiplier`` of a convolution. Here a float ``conv_transpose2d`` of
    ``x - zp_in`` (exact under the same kind of bound as the convolutions) cropped at ``pad``."""

    def __init__(self, op: OpInfo, weight_iohw: np.ndarray, bias: np.ndarray, stride, pad, out_hw,
                 requant: Requantizer, acc_dtype: torch.dtype, zp_in: int):
        super().__init__(op)
        self.register_buffer("weight", torch.from_numpy(weight_iohw.astype(np.float32)).to(acc_dtype))
        self.register_buffer("bias64", torch.from_numpy(bias.astype(np.float64)))
        self.stride, self.pad, self.out_hw = tuple(stride), tuple(pad), tuple(out_hw)
        self.requant, self.acc_dtype, self.zp_in = requant, acc_dtype, zp_in

    def forward(self, x, *_):
        samples = x.shape[0]
        x = flat(x)
        xf = (x.to(self.acc_dtype) - self.zp_in).permute(0, 3, 1, 2)
        full = F.conv_transpose2d(xf, self.weight, None, self.stride)
        (top, left), (oh, ow) = self.pad, self.out_hw
        need_h, need_w = top + oh - full.shape[2], left + ow - full.shape[3]
        if need_h > 0 or need_w > 0:
            full = F.pad(full, (0, max(need_w, 0), 0, max(need_h, 0)))
        acc = full[:, :, top:top + oh, left:left + ow].permute(0, 2, 3, 1)
        return (unflat(self.requant(acc, self.bias64), samples),)


@register("TRANSPOSE_CONV")
def build_transpose_conv(op: OpInfo) -> TransposeConvOp:
    w, x = op.inputs[1], op.inputs[2]  # input 0: the output shape (known from the output tensor)
    out = op.outputs[0]
    op.require_int8(x, w, out)
    if not w.is_const:
        raise op.fail("non-constant weights are not emulated")
    ohwi = w.data.astype(np.int64)
    channels, kh, kw, cin = ohwi.shape
    sh, sw = op.option("strideH", 1), op.option("strideW", 1)
    h, wd = x.shape[1:3]
    oh, ow = out.shape[1:3]
    if op.option("padding") == tfl.Padding.SAME:
        pads = [max((-(-o // s) - 1) * s + k - o, 0) // 2 for o, s, k in ((oh, sh, kh), (ow, sw, kw))]
    else:
        pads = [0, 0]
    bias_t = op.inputs[3] if len(op.inputs) > 3 else None
    bias = np.zeros(channels, np.int64) if bias_t is None else bias_t.data.reshape(-1).astype(np.int64)
    bound = 255 * np.abs(ohwi).reshape(channels, -1).sum(1)
    s_in, s_out = float(x.scale), float(out.scale)
    ms = [quantize_multiplier(s_in * float(s) / s_out) for s in _per_channel_scales(op, w, channels)]
    lo, hi = activation_range(op, out)
    requant = Requantizer([m for m, _ in ms], [s for _, s in ms], np.abs(bias) + bound, out.zero_point, lo, hi)
    weight_iohw = np.ascontiguousarray(ohwi.transpose(3, 0, 1, 2))
    return TransposeConvOp(op, weight_iohw, bias, (sh, sw), pads, (oh, ow), requant,
                           _accumulation_dtype(int(bound.max(initial=0))), x.zero_point)


class BatchMatMulOp(EmulatedOp):
    """BATCH_MATMUL int8 x int8 -> int8 (``batch_matmul.cc`` ``EvalInt8Int8``,
    ``reference_ops::BatchMatMul``): ``sum_k (x[i, k] - zp_x) * (y[k, j] - zp_y)`` over the
    (``adj_x`` / ``adj_y`` transposed) operands, batch dims broadcast, then
    ``MultiplyByQuantizedMultiplier`` with ``QuantizeMultiplier(double(s_x * s_y) / double(s_out))``
    (the scale product in float, ``GetQuantizedConvolutionMultipler``), full int8 range. The
    products are summed exactly in float (float32 while ``255^2 * depth < 2^24``, else float64)."""

    def __init__(self, op: OpInfo, requant: Requantizer, acc_dtype: torch.dtype):
        super().__init__(op)
        x, y = op.inputs[0], op.inputs[1]
        self.adj = (bool(op.option("adjX", False)), bool(op.option("adjY", False)))
        self.zps = (x.zero_point, y.zero_point)
        self.ranks = (x.rank, y.rank)
        self.const = []
        for k, t in enumerate((x, y)):
            if t.is_const:
                self.register_buffer(f"const{k}", torch.from_numpy(np.ascontiguousarray(t.data).astype(np.int8)))
        self.is_const = (x.is_const, y.is_const)
        self.requant, self.acc_dtype = requant, acc_dtype
        self.out_rank = op.outputs[0].rank

    def forward(self, *xs):
        it = iter(xs)
        samples = xs[0].shape[0]
        ops = []
        for k in range(2):
            v = getattr(self, f"const{k}") if self.is_const[k] else next(it)
            v = v.to(self.acc_dtype) - self.zps[k]
            if self.adj[k]:
                v = v.transpose(-1, -2)
            if not self.is_const[k]:  # [S, *shape] -> keep the sample axis in front of the batch dims
                v = v.reshape(samples, *([1] * (self.out_rank - self.ranks[k])), *v.shape[1:])
            ops.append(v)
        acc = torch.matmul(ops[0], ops[1])
        if acc.shape[0] != samples:
            acc = acc.expand(samples, *acc.shape[1:]) if acc.dim() > self.out_rank else \
                acc.expand(samples, *acc.shape)
        return (self.requant(acc.contiguous()),)


@register("BATCH_MATMUL")
def build_batch_matmul(op: OpInfo) -> BatchMatMulOp:
    x, y, out = op.inputs[0], op.inputs[1], op.outputs[0]
    op.require_int8(x, y, out)
    depth = x.shape[-2] if op.option("adjX", False) else x.shape[-1]
    m, e = quantize_multiplier(float(f32(x.scale * y.scale)) / float(out.scale))
    bound = 255 * 255 * depth
    requant = Requantizer([m], [e], np.array([bound]), out.zero_point, -128, 127)
    return BatchMatMulOp(op, requant, _accumulation_dtype(bound))
