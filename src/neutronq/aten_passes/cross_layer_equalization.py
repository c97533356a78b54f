"""Cross-layer equalization (Nagel et al. 2019) on an exported aten graph, before annotation.

For a chain ``conv1 -> [activation] -> [zero pad] -> conv2`` in which conv1's output feeds only
that chain, output channel ``c`` of conv1 and input channel ``c`` of conv2 are rescaled by
``1 / s_c`` and ``s_c``. With ``s_c = sqrt(r1_c / r2_c)`` (``r`` the channel's max |weight|) both
layers end with the same per-channel ranges, ``sqrt(r1_c * r2_c)``, so a per-tensor weight scale
fits all channels far better. The float model is unchanged:

* no activation, ``relu``: ``relu(x / s) = relu(x) / s`` for ``s > 0`` — exact; conv1's weights
  and bias and conv2's weights are rescaled ("classic" pairs);
* ``relu6`` / ``hardtanh(0, 6)``: a per-channel scale would move the clip point to ``6 / s_c``,
  and neither the NPU nor TFLite has a per-channel clip. We keep conv1 and its fused ReLU6 as
  they are and put the per-channel factor ``1 / s_c`` in a 1x1 depthwise conv (no bias) right
  after the activation: ``relu6(x) / s`` exactly, an op the NPU runs. conv2's input channels
  take ``s_c``. Here ``s_c = sqrt(a_c / r2_c)`` balances the activation (range ``a_c = 6``, the
  clip, without data) against conv2, and ``1 / s_c`` is snapped to ``k / 127`` (k = 1..127) so
  the 1x1 conv's int8 weights hold it exactly, per tensor or per channel. This is done only when
  conv2 is depthwise (``depthwise_scale_ops=True``): depthwise convs are where per-tensor
  weights hurt, and the extra op costs one element-wise pass over the activation.
  ReLU6 is never replaced by ReLU (that would change the float model).

Other chains (residual adds, several users, other activations, non-zero padding) are left alone.
Conv biases are rescaled with their output channels; bias absorption is not done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch.fx import GraphModule, Node

from neutronq.fx import arg, free_attr_name, get_attr_value, hardtanh_range, set_attr_value, single_user

__all__ = ["CrossLayerEqualization", "EqualizedPair", "find_pairs"]

aten = torch.ops.aten

_CONV = (aten.conv2d.default,)
_EXACT_ACTIVATIONS = (aten.relu.default, aten.relu_.default)
_CLIP6_ACTIVATIONS = (aten.relu6.default, aten.hardtanh.default, aten.hardtanh_.default)
_PADS = (aten.pad.default, aten.constant_pad_nd.default)


@dataclass
class EqualizedPair:
    """One conv1 -> ... -> conv2 chain: ``kind`` is ``"exact"`` or ``"scale_op"``."""

    conv1: Node
    conv2: Node
    activation: Optional[Node]
    kind: str
    scales: Optional[torch.Tensor] = field(default=None, repr=False)


def _groups(conv: Node) -> int:
    return int(arg(conv, 6, "groups", 1))


def _is_clip6(node: Node) -> bool:
    return hardtanh_range(node) == (0.0, 6.0)


def _zero_pad(node: Node) -> bool:
    if node.target is aten.pad.default:
        mode = arg(node, 2, "mode", "constant")
        value = arg(node, 3, "value", None)
        return mode == "constant" and (value is None or float(value) == 0.0)
    return float(arg(node, 2, "value", 0.0)) == 0.0


def find_pairs(gm: GraphModule, depthwise_scale_ops: bool = True) -> list[EqualizedPair]:
    """The chains this pass can equalize, in graph order."""
    pairs = []
    for conv1 in gm.graph.nodes:
        if conv1.op != "call_function" or conv1.target not in _CONV:
            continue
        if get_attr_value(gm, conv1.args[1]) is None:
            continue
        node, activation, kind = single_user(conv1), None, "exact"
        if node is not None and node.op == "call_function" and node.target in _EXACT_ACTIVATIONS:
            activation, node = node, single_user(node)
        elif node is not None and node.op == "call_function" and node.target in _CLIP6_ACTIVATIONS:
            if not _is_clip6(node):
                continue
            activation, node, kind = node, single_user(node), "scale_op"
        if node is not None and node.op == "call_function" and node.target in _PADS and _zero_pad(node):
            node = single_user(node)
        if node is None or node.op != "call_function" or node.target not in _CONV:
            continue
        conv2 = node
        w1, w2 = get_attr_value(gm, conv1.args[1]), get_attr_value(gm, conv2.args[1])
        if w2 is None or w1.dim() != 4 or w2.dim() != 4:
            continue
        channels, groups2 = w1.shape[0], _groups(conv2)
        if groups2 == 1:
            if w2.shape[1] != channels:
                continue
        elif not (groups2 == channels and w2.shape[1] == 1 and w2.shape[0] % channels == 0):
            continue  # grouped convs other than depthwise are left alone
        if kind == "scale_op" and not (depthwise_scale_ops and groups2 > 1):
            continue
        pairs.append(EqualizedPair(conv1, conv2, activation, kind))
    return pairs


def _input_channel_ranges(w2: torch.Tensor, channels: int, groups: int) -> torch.Tensor:
    if groups == 1:
        return w2.abs().amax(dim=(0, 2, 3))
    return w2.abs().reshape(channels, -1).amax(dim=1)


def _scale_input_channels(w2: torch.Tensor, s: torch.Tensor, groups: int) -> torch.Tensor:
    if groups == 1:
        return w2 * s.reshape(1, -1, 1, 1)
    multiplier = w2.shape[0] // s.numel()
    return w2 * s.repeat_interleave(multiplier).reshape(-1, 1, 1, 1)


class CrossLayerEqualization:
    """Graph pass: equalize conv pairs (see the module docstring). Returns the same module.

    Args:
        iterations: sweeps over the exact pairs (a conv in two pairs converges over sweeps).
        depthwise_scale_ops: equalize ReLU6 chains into a depthwise conv with a 1x1 scale op.
        activation_range: the range assumed for a ReLU6 output when balancing scale-op pairs.
    """

    def __init__(self, iterations: int = 4, depthwise_scale_ops: bool = True,
                 activation_range: float = 6.0):
        self.iterations = int(iterations)
        self.depthwise_scale_ops = bool(depthwise_scale_ops)
        self.activation_range = float(activation_range)
        self.pairs: list[EqualizedPair] = []

    def __call__(self, gm: GraphModule) -> GraphModule:
        self.pairs = find_pairs(gm, self.depthwise_scale_ops)
        for _ in range(self.iterations):
            for pair in self.pairs:
                if pair.kind == "exact":
                    self._equalize_exact(gm, pair)
        for pair in self.pairs:
            if pair.kind == "scale_op":
                self._insert_scale_op(gm, pair)
        gm.graph.lint()
        gm.recompile()
        return gm

    # ---------------------------------------------------------------------------------------
    @staticmethod
    def _equalize_exact(gm: GraphModule, pair: EqualizedPair) -> None:
        w1, w2 = get_attr_value(gm, pair.conv1.args[1]), get_attr_value(gm, pair.conv2.args[1])
        groups2 = _groups(pair.conv2)
        r1 = w1.abs().reshape(w1.shape[0], -1).amax(dim=1)
        r2 = _input_channel_ranges(w2, w1.shape[0], groups2)
        ok = (r1 > 0) & (r2 > 0)
        s = torch.where(ok, torch.sqrt(r1 / r2.clamp_min(1e-30)), torch.ones_like(r1))
        pair.scales = s if pair.scales is None else pair.scales * s
        set_attr_value(gm, pair.conv1.args[1], w1 / s.reshape(-1, 1, 1, 1))
        bias = arg(pair.conv1, 2, "bias")
        b1 = get_attr_value(gm, bias)
        if b1 is not None:
            set_attr_value(gm, bias, b1 / s)
        set_attr_value(gm, pair.conv2.args[1], _scale_input_channels(w2, s, groups2))

    def _insert_scale_op(self, gm: GraphModule, pair: EqualizedPair) -> None:
        w2 = get_attr_value(gm, pair.conv2.args[1])
        channels = _groups(pair.conv2)  # depthwise: one group per channel
        r2 = _input_channel_ranges(w2, channels, _groups(pair.conv2))
        # 1/s = sqrt(r2 / a) up to a common factor; largest = 1, snapped to k/127
        inv = torch.sqrt(r2 / self.activation_range)
        inv = inv / inv.max().clamp_min(1e-30)
        k = torch.clamp(torch.round(inv * 127.0), 1, 127)
        inv = k / 127.0
        s = 1.0 / inv
        pair.scales = s
        set_attr_value(gm, pair.conv2.args[1], _scale_input_channels(w2, s, _groups(pair.conv2)))

        act = pair.activation
        name = free_attr_name(gm, f"{pair.conv2.name}_cle_scale")
        gm.register_parameter(name, torch.nn.Parameter(inv.reshape(-1, 1, 1, 1).to(w2.dtype),
                                                       requires_grad=False))
        users = list(act.users)
        with gm.graph.inserting_after(act):
            weight = gm.graph.get_attr(name)
        with gm.graph.inserting_after(weight):
            scaled = gm.graph.call_function(
                aten.conv2d.default, (act, weight, None, [1, 1], [0, 0], [1, 1], channels))
        weight.meta["val"] = gm.get_parameter(name).data
        if "val" in act.meta:
            scaled.meta["val"] = act.meta["val"]
        for key in ("nn_module_stack", "stack_trace"):
            if key in pair.conv2.meta:
                scaled.meta[key] = pair.conv2.meta[key]
        for user in users:
            user.replace_input_with(act, scaled)

