"""The NPU's limits per op, each next to the op it governs, with its source.

``check(node, spec, ep)`` returns a ``LimitCheck``: the reason the node cannot run on the NPU
(``None`` if it can) and the limits that could not be enforced because their number is not
published for the target (``spec.num_macs is None`` ...).

Sources:
  [NXP-conv]   eIQ Neutron converter documentation, conv: kernel, stride and dilation at most
               4096; kH x kW x round_up(in_channels, MACs per pipe) at most 65535; transposed
               conv with groups 1 and stride at most 2; depthwise only when groups = in = out.
  [NXP-smax]   eIQ Neutron converter documentation, softmax: over the channel dimension,
               channels at most 2040.
  [NXP-shared] eIQ Neutron int8 kernels: cat, pools, pad and data movement need equal input and
               output quantization parameters.
  [TFL-int8]   TFLite's int8 quantization spec (fixed output parameters of LOGISTIC, SOFTMAX,
               TANH) and reference kernels (tensors of rank at most 4 for most ops).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from neutronq.lowering import graph as g
from neutronq.lowering.ops._padding import same_equivalent, torch_out_size
from neutronq.lowering.ops.data_movement import pad_pairs
from neutronq.lowering.ops.pool import adaptive_kernel, avg_pool_params, max_pool_params

__all__ = ["LimitCheck", "check", "LIMITS"]

CONV_MAX_KERNEL_STRIDE_DILATION = 4096  # [NXP-conv]
CONV_MAX_KERNEL_VOLUME = 65535  # [NXP-conv] kH * kW * round_up(in_channels, MACs)
TRANSPOSED_CONV_MAX_STRIDE = 2  # [NXP-conv]
SOFTMAX_MAX_CHANNELS = 2040  # [NXP-smax]
MAX_RANK = 4  # [TFL-int8]
FIXED_OUTPUT = {  # [TFL-int8]
    "aten.sigmoid.default": (1.0 / 256.0, -128),
    "aten._softmax.default": (1.0 / 256.0, -128),
    "aten.tanh.default": (1.0 / 128.0, 0),
}


@dataclass
class LimitCheck:
    reason: Optional[str] = None
    unenforced: list[str] = field(default_factory=list)


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def input_qparams(arg) -> Optional[tuple[float, int]]:
    if g.int8_activation_dq(arg):
        return float(arg.args[1]), int(arg.args[2])
    return g.output_qparams(arg)


def _shape(node) -> tuple:
    val = g.tensor_val(node)
    return tuple(val.shape) if val is not None else ()


def _equal_io(node, out_node=None) -> Optional[str]:
    """[NXP-shared] input and output parameters equal."""
    out_node = out_node or node
    qi, qo = input_qparams(node.args[0]), g.output_qparams(out_node)
    if qi is None or qo is None or (abs(qi[0] - qo[0]) > 1e-9 * max(qi[0], qo[0]) or qi[1] != qo[1]):
        return (f"{g.node_op(node)} needs equal input and output quantization parameters on the NPU "
                f"(input {qi}, output {qo}); quantize it with NeutronQuantizer, whose rule shares them")
    return None


# --- conv [NXP-conv] --------------------------------------------------------------------------
def conv_limits(node, spec, ep, res: LimitCheck) -> Optional[str]:
    x, w, b, stride, padding, dilation, transposed, output_padding, groups = node.args[:9]
    if not g.is_dq_of_constant(w, ep):
        return "conv weight is not an int8 constant (quantize the model with NeutronQuantizer)"
    w_shape = _shape(w)
    in_ch, out_ch = _shape(x)[1], w_shape[0]
    kernel = list(w_shape[2:])
    if transposed:
        if groups != 1 or max(stride) > TRANSPOSED_CONV_MAX_STRIDE:
            return (f"transposed conv needs groups 1 and stride <= {TRANSPOSED_CONV_MAX_STRIDE} "
                    f"(has groups {groups}, stride {list(stride)})")
        return "transposed conv is within the NPU's limits but neutronq does not lower it to TFLite yet"
    for what, values in (("kernel", kernel), ("stride", stride), ("dilation", dilation)):
        if max(values) > CONV_MAX_KERNEL_STRIDE_DILATION:
            return (f"conv {what} {list(values)} exceeds the NPU limit of "
                    f"{CONV_MAX_KERNEL_STRIDE_DILATION}; reduce it or keep this conv on the CPU")
    depthwise = groups > 1 and groups == in_ch == out_ch
    if groups != 1 and not depthwise:
        return (f"grouped conv (groups {groups}, {in_ch} in, {out_ch} out channels) is not depthwise; "
                "the NPU runs depthwise convs only when groups = in = out channels")
    per_group_in = in_ch // groups
    volume_macs = spec.num_macs
    if volume_macs is None:
        res.unenforced.append(
            f"{node.name}: kH*kW*round_up(in_channels, MACs) <= {CONV_MAX_KERNEL_VOLUME} not enforced: "
            f"MACs per pipe are not published for {spec.target}")
    else:
        k = 1
        for d in kernel:
            k *= int(d)
        volume = k * _round_up(per_group_in, volume_macs)
        if volume > CONV_MAX_KERNEL_VOLUME:
            return (f"conv kernel volume kH*kW*round_up(in_channels={per_group_in}, {volume_macs}) = "
                    f"{volume} exceeds the NPU limit {CONV_MAX_KERNEL_VOLUME} for {spec.target}; "
                    "split the input channels or use a smaller kernel")
    if len(_shape(x)) not in (3, 4):
        return f"conv of a rank-{len(_shape(x))} input: only conv1d and conv2d are lowered"
    if g.node_op(w).endswith("per_tensor.default") and int(w.args[2]) != 0:
        return "conv weights must be symmetric (zero point 0)"
    return None


# --- fully connected -----------------------------------------------------------------------------
def fc_limits(node, spec, ep, res) -> Optional[str]:
    name = g.node_op(node)
    x, wt = (node.args[1], node.args[2]) if name == "aten.addmm.default" else (node.args[0], node.args[1])
    if not g.is_weight_path(wt, ep):
        return "matrix multiply of two activations: the NPU's fully-connected op needs a constant weight"
    if name == "aten.addmm.default":
        if node.kwargs.get("beta", 1) != 1 or node.kwargs.get("alpha", 1) != 1:
            return "addmm with beta or alpha other than 1"
        if not g.is_dq_of_constant(node.args[0], ep):
            return "addmm bias is not an int32 constant"
    if len(_shape(x)) != 2:
        return "fully connected input must be 2-D"
    return None


# --- softmax [NXP-smax] -------------------------------------------------------------------------
def softmax_limits(node, spec, ep, res) -> Optional[str]:
    shape = _shape(node.args[0])
    rank = len(shape)
    dim = int(node.args[1]) % rank
    channel = 1 if rank >= 2 else 0
    if dim != channel:
        return f"softmax over dim {dim}: the NPU's softmax runs over the channel dim (1) only"
    if shape[channel] > SOFTMAX_MAX_CHANNELS:
        return f"softmax over {shape[channel]} channels exceeds the NPU limit of {SOFTMAX_MAX_CHANNELS}"
    return _fixed_output(node, spec, ep, res)


def _fixed_output(node, spec, ep, res) -> Optional[str]:
    want = FIXED_OUTPUT[g.node_op(node)]
    got = g.output_qparams(node)
    if got is None or abs(got[0] - want[0]) > 1e-9 or got[1] != want[1]:
        return (f"{g.node_op(node)} output must be quantized with scale {want[0]} and zero point {want[1]} "
                f"(int8 kernel requirement), got {got}")
    return None


# --- pools [NXP-shared] ---------------------------------------------------------------------------
def max_pool_limits(node, spec, ep, res) -> Optional[str]:
    kernel, stride, padding, dilation, ceil_mode = max_pool_params(node)
    in_hw = _shape(node.args[0])[2:]
    users = list(node.users)
    out_node = node
    if g.node_op(node).endswith("with_indices.default"):
        if any(u.args[1] != 0 for u in users):
            return "max pool indices are used: the NPU computes the values only"
        out_node = users[0]
    if max(dilation) != 1:
        return "max pool with dilation"
    out_hw = _shape(out_node)[2:]
    floor_hw = [torch_out_size(s, k, st, p, 1, False) for s, k, st, p in zip(in_hw, kernel, stride, padding)]
    if ceil_mode and list(out_hw) != floor_hw:
        return "max pool with ceil_mode that changes the output size"
    if any(padding) and not all(same_equivalent(s, k, st, p, 1, o) for s, k, st, p, o in
                                zip(in_hw, kernel, stride, padding, out_hw)):
        return (f"max pool padding {padding} is not TFLite SAME padding for input {list(in_hw)}, "
                f"kernel {kernel}, stride {stride}")
    return _equal_io(node, out_node)


def avg_pool_limits(node, spec, ep, res) -> Optional[str]:
    kernel, stride, padding, ceil_mode, count_include_pad, divisor_override = avg_pool_params(node)
    if divisor_override is not None:
        return "avg pool with divisor_override"
    in_hw = _shape(node.args[0])[2:]
    out_hw = _shape(node)[2:]
    floor_hw = [torch_out_size(s, k, st, p, 1, False) for s, k, st, p in zip(in_hw, kernel, stride, padding)]
    if ceil_mode and list(out_hw) != floor_hw:
        return "avg pool with ceil_mode that changes the output size"
    if any(padding) and not count_include_pad and not all(
            same_equivalent(s, k, st, p, 1, o) for s, k, st, p, o in zip(in_hw, kernel, stride, padding, out_hw)):
        return "avg pool excluding padding that is not TFLite SAME padding"
    return _equal_io(node)


def adaptive_avg_pool_limits(node, spec, ep, res) -> Optional[str]:
    if adaptive_kernel(_shape(node.args[0])[2:], _shape(node)[2:]) is None:
        return "adaptive avg pool whose input size is not a multiple of its output size"
    return _equal_io(node)


# --- data movement [NXP-shared] --------------------------------------------------------------------
def cat_limits(node, spec, ep, res) -> Optional[str]:
    qo = g.output_qparams(node)
    for a in node.args[0]:
        qi = input_qparams(a)
        if qi is None or qo is None or abs(qi[0] - qo[0]) > 1e-9 * qo[0] or qi[1] != qo[1]:
            return f"cat inputs and output need equal quantization parameters on the NPU ({qi} vs {qo})"
    return None


def pad_limits(node, spec, ep, res) -> Optional[str]:
    value = node.args[2] if len(node.args) > 2 else 0.0
    if value != 0:
        return f"constant pad with value {value}: the NPU pads with the zero point (value 0) only"
    if any(b < 0 or a < 0 for b, a in pad_pairs(node, len(_shape(node.args[0])))):
        return "negative padding (cropping)"
    return _equal_io(node)


def slice_limits(node, spec, ep, res) -> Optional[str]:
    step = int(node.args[4]) if len(node.args) > 4 else 1
    if step < 1:
        return "slice with a non-positive step"
    return _equal_io(node)


def hardtanh_limits(node, spec, ep, res) -> Optional[str]:
    if g.activation_kind(node) is None:
        return "hardtanh with a range other than (0, 6) or (-1, 1) has no int8 NPU kernel"
    return None


def binary_limits(node, spec, ep, res) -> Optional[str]:
    for a in node.args[:2]:
        if not isinstance(a, torch.fx.Node):
            return f"{g.node_op(node)} with a scalar operand {a!r}: only tensor operands are lowered"
    return None


def mean_limits(node, spec, ep, res) -> Optional[str]:
    if node.args[1] is None or len(node.args[1]) == 0:
        return "mean over all dims"
    return None


def _equal_io_limit(node, spec, ep, res):
    return _equal_io(node)


LIMITS: dict[str, Callable] = {
    "aten.convolution.default": conv_limits,
    "aten.addmm.default": fc_limits,
    "aten.mm.default": fc_limits,
    "aten._softmax.default": softmax_limits,
    "aten.sigmoid.default": _fixed_output,
    "aten.tanh.default": _fixed_output,
    "aten.max_pool2d_with_indices.default": max_pool_limits,
    "aten.max_pool2d.default": max_pool_limits,
    "aten.avg_pool2d.default": avg_pool_limits,
    "aten._adaptive_avg_pool2d.default": adaptive_avg_pool_limits,
    "aten.cat.default": cat_limits,
    "aten.constant_pad_nd.default": pad_limits,
    "aten.slice_copy.Tensor": slice_limits,
    "aten.view_copy.default": _equal_io_limit,
    "aten.permute_copy.default": _equal_io_limit,
    "aten.squeeze_copy.dims": _equal_io_limit,
    "aten.unsqueeze_copy.default": _equal_io_limit,
    "aten.hardtanh.default": hardtanh_limits,
    "aten.hardtanh_.default": hardtanh_limits,
    "aten.add.Tensor": binary_limits,
    "aten.mul.Tensor": binary_limits,
    "aten.mean.dim": mean_limits,
}


def check(node, spec, ep) -> LimitCheck:
    res = LimitCheck()
    for arg in [node, *[a for a in node.args if isinstance(a, torch.fx.Node)]]:
        if len(_shape(arg)) > MAX_RANK:
            res.reason = f"tensor {arg.name} has rank {len(_shape(arg))} > {MAX_RANK}"
            return res
    fn = LIMITS.get(g.node_op(node))
    if fn is not None:
        res.reason = fn(node, spec, ep, res)
    return res
