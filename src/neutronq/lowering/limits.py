"""What every op's NPU limits share: the result type, the checks common to many ops, and the
sources the limits cite. Each op's own limits sit next to its lowering in ``lowering/ops/``
(its ``LIMITS`` table, under the edge op's name); ``lowering.ops.check_limits`` applies them.

A limit returns the reason the node cannot run on the NPU (``None`` if it can) and records in
``LimitCheck.unenforced`` the limits it could not enforce because their number is not published
for the target (``spec.num_macs is None`` ...).

Sources:
  [NXP-conv]   eIQ Neutron converter documentation, conv: kernel, stride and dilation at most
               4096; kH x kW x round_up(in_channels, MACs per pipe) at most 65535; transposed
               conv with groups 1 and stride at most 2; depthwise only when groups = in = out.
  [NXP-smax]   eIQ Neutron converter documentation, softmax: over the channel dimension,
               channels at most 2040.
  [NXP-smax-code] ExecuTorch 1.5.1 backends/nxp/.../softmax_converter.py L56-130 (NXP's
               reference converter): the channel dim is dim 1 of a channels-first (image) node
               and the last dim of any other; the product of the other dims at most 4096, the
               tensor at most 524288 elements.
  [NXP-bmm]    ExecuTorch 1.5.1 backends/nxp/.../bmm_converter.py L28-60: batch matmul of two
               rank-3 int8 inputs, both input zero points 0.
  [NXP-shared] eIQ Neutron int8 kernels: cat, pools, pad and data movement need equal input and
               output quantization parameters.
  [TFL-int8]   TFLite's int8 quantization spec (fixed output parameters of LOGISTIC, SOFTMAX,
               TANH) and reference kernels (tensors of rank at most 4 for most ops).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from neutronq.fx import node_op, tensor_shape
from neutronq.lowering.edge import int8_activation_dq, output_qparams

__all__ = ["LimitCheck", "MAX_RANK", "shape", "round_up", "input_qparams", "equal_io", "equal_io_limit",
           "same_qparams"]

MAX_RANK = 4  # [TFL-int8]


@dataclass
class LimitCheck:
    reason: Optional[str] = None
    unenforced: list[str] = field(default_factory=list)


def shape(node) -> tuple:
    """The static shape of the tensor a node computes; () when unknown."""
    return tensor_shape(node) or ()


def round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def input_qparams(arg) -> Optional[tuple[float, int]]:
    """The int8 (scale, zero point) an op's activation input arrives with."""
    if int8_activation_dq(arg):
        return float(arg.args[1]), int(arg.args[2])
    return output_qparams(arg)


def same_qparams(a: Optional[tuple[float, int]], b: Optional[tuple[float, int]]) -> bool:
    return a is not None and b is not None and abs(a[0] - b[0]) <= 1e-9 * max(a[0], b[0]) and a[1] == b[1]


def equal_io(node, out_node=None) -> Optional[str]:
    """[NXP-shared] input and output parameters equal."""
    out_node = out_node or node
    qi, qo = input_qparams(node.args[0]), output_qparams(out_node)
    if not same_qparams(qi, qo):
        return (f"{node_op(node)} needs equal input and output quantization parameters on the NPU "
                f"(input {qi}, output {qo}); quantize it with NeutronQuantizer, whose rule shares them")
    return None


def equal_io_limit(node, spec, ep, res: LimitCheck) -> Optional[str]:
    """The limit of data movement ops: [NXP-shared] equal input and output parameters."""
    return equal_io(node)
