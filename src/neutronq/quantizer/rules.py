"""Quantization rules, one entry per op family, all in this file.

Each rule says where quantize/dequantize go around the ops it covers, under the names that
``torch.export`` gives them (in-place forms included). Rules match ``node.target``: non-strict
export leaves no ``source_fn_stack`` metadata, so nothing here relies on it.

Adding an op is one entry in ``RULES`` (and one test in ``tests/quantizer/test_rules.py``).

Families:
  * ``Weighted``: conv / linear / addmm. Input and weight quantized, int32 bias derived from
    them; a following batch norm (QAT) and relu / relu6 / hardtanh(0, 6) become part of the
    unit, so no quantize/dequantize sits between them. Sigmoid and tanh are never fused.
  * ``Elementwise``: every tensor input and the output get their own activation parameters.
  * ``SharedIO``: the output shares the input's parameters (pools, pad, data movement, mean):
    the NPU's kernels for them need equal input and output parameters.
  * ``Concat``: all inputs and the output share one set of parameters.
  * ``FixedOutput``: the int8 kernel imposes the output parameters (sigmoid, softmax, tanh).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch.fx import Node
from torchao.quantization.pt2e.quantizer import (
    QuantizationAnnotation,
    QuantizationSpecBase,
    SharedQuantizationSpec,
)
from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY

from neutronq.aten_passes.fuse_batch_norm_for_qat import qat_batch_norm
from neutronq.backend.scheme import (
    FUSED_ACTIVATION_RANGES,
    SIGMOID_SCALE,
    SIGMOID_ZERO_POINT,
    SOFTMAX_SCALE,
    SOFTMAX_ZERO_POINT,
    TANH_SCALE,
    TANH_ZERO_POINT,
)
from neutronq.fx import get_attr_value, hardtanh_range, is_float_tensor, layer_name, single_user
from neutronq.quantizer.specs import QuantizationScheme, bias_safe_weight_scale

aten = torch.ops.aten

ANNOTATION_KEY = Q_ANNOTATION_KEY  # torchao's node.meta key of an annotation

# Activations the NPU (and TFLite) fuse into conv / fully-connected: relu, relu6, relu_n1_to_1.
_FUSABLE_HARDTANH_RANGES = tuple(r for r in FUSED_ACTIVATION_RANGES.values() if r[1] != float("inf"))
_RELU_TARGETS = (aten.relu.default, aten.relu_.default, aten.relu6.default)
_HARDTANH_TARGETS = (aten.hardtanh.default, aten.hardtanh_.default)
BATCH_NORM_TARGETS = (
    aten.batch_norm.default,
    aten._native_batch_norm_legit.default,
    aten._native_batch_norm_legit_no_training.default,
    aten.cudnn_batch_norm.default,
    qat_batch_norm,  # neutronq's QAT conv/linear + BN unit (aten_passes.fuse_batch_norm_for_qat)
)


# --------------------------------------------------------------------------------------------
# helpers shared by the rules
# --------------------------------------------------------------------------------------------
def is_annotated(node: Node) -> bool:
    ann = node.meta.get(ANNOTATION_KEY)
    return ann is not None and ann._annotated


def input_spec(arg: Node, act_spec: QuantizationSpecBase) -> QuantizationSpecBase:
    """The spec of an activation input edge: the producer's own output parameters when it has
    them (no requantization between two quantized ops), else fresh activation parameters."""
    ann = arg.meta.get(ANNOTATION_KEY)
    if ann is not None and ann._annotated and ann.output_qspec is not None:
        return SharedQuantizationSpec(arg)
    return act_spec


def annotate(node: Node, inputs: dict, output: Optional[QuantizationSpecBase]) -> None:
    node.meta[ANNOTATION_KEY] = QuantizationAnnotation(
        input_qspec_map=inputs, output_qspec=output, _annotated=True
    )


def is_fusable_activation(node: Node) -> bool:
    """relu, relu6 or hardtanh with the range of relu6 / relu_n1_to_1."""
    if node.op != "call_function":
        return False
    if node.target in _RELU_TARGETS:
        return True
    return node.target in _HARDTANH_TARGETS and hardtanh_range(node) in _FUSABLE_HARDTANH_RANGES


def _batch_norm_output(node: Node) -> Optional[Node]:
    """The node carrying a batch norm's normalised output (``getitem 0`` for tuple forms)."""
    if node.target is aten.batch_norm.default or node.target is qat_batch_norm:
        return node
    user = single_user(node)
    if user is not None and user.target is operator.getitem and user.args[1] == 0:
        return user
    return None


def unit_output(node: Node) -> Node:
    """The last node of the unit that starts at a conv / linear: BN and a fusable activation."""
    out = node
    user = single_user(out)
    if user is not None and user.target in BATCH_NORM_TARGETS:
        bn_out = _batch_norm_output(user)
        if bn_out is not None:
            out = bn_out
            user = single_user(out)
    if user is not None and is_fusable_activation(user) and not is_annotated(user):
        out = user
    return out


# --------------------------------------------------------------------------------------------
# rule families
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """Base of the rule families: a name, the targets it covers, and ``annotate``."""

    name: str
    targets: tuple

    def annotate(self, node: Node, scheme: QuantizationScheme, specs: dict) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class Weighted(Rule):
    """conv / linear / addmm: input + weight + derived int32 bias, fused BN and activation."""

    input_index: int = 0
    weight_index: int = 1
    bias_index: Optional[int] = 2
    weight_ch_axis: int = 0
    per_channel_allowed: bool = True  # per-channel weights are offered for convs only

    def annotate(self, node, scheme, specs):
        x, w = node.args[self.input_index], node.args[self.weight_index]
        if not (is_float_tensor(x) and is_float_tensor(w)):
            return
        bias = node.args[self.bias_index] if self.bias_index is not None and len(node.args) > self.bias_index else None
        per_channel = scheme.per_channel and self.per_channel_allowed
        # per tensor as per channel: the weight scale floor the int32 bias needs
        bias_value = get_attr_value(node.graph.owning_module, bias) if isinstance(bias, Node) else None
        weight_spec = scheme.weight(
            per_channel=per_channel, ch_axis=self.weight_ch_axis,
            min_scale=None if bias_value is None else bias_safe_weight_scale(bias_value), layer=layer_name(node),
        )
        inputs = {x: input_spec(x, specs["act"]), w: weight_spec}
        if isinstance(bias, Node) and is_float_tensor(bias):
            inputs[bias] = scheme.bias(x, w, node, weight_spec)
        out = unit_output(node)
        if out is node:
            annotate(node, inputs, specs["act"])
            return
        annotate(node, inputs, None)
        # the nodes between the op and the unit's output (BN, its getitem) carry no quantization
        n = single_user(node)
        while n is not None and n is not out:
            annotate(n, {}, None)
            n = single_user(n)
        annotate(out, {}, specs["act"])


@dataclass(frozen=True)
class Elementwise(Rule):
    """Every float tensor input and the output get their own activation parameters."""

    def annotate(self, node, scheme, specs):
        inputs = {a: input_spec(a, specs["act"]) for a in _tensor_args(node)}
        if inputs:
            annotate(node, inputs, specs["act"])


@dataclass(frozen=True)
class SharedIO(Rule):
    """The output shares the parameters of the first input."""

    def annotate(self, node, scheme, specs):
        x = node.args[0]
        if not is_float_tensor(x):
            return
        annotate(node, {x: input_spec(x, specs["act"])}, SharedQuantizationSpec((x, node)))


@dataclass(frozen=True)
class Concat(Rule):
    """All inputs and the output share one set of parameters (int8 CONCATENATION needs it)."""

    def annotate(self, node, scheme, specs):
        tensors = [t for t in node.args[0] if is_float_tensor(t)]
        if not tensors or len(tensors) != len(node.args[0]):
            return
        first = tensors[0]
        shared = SharedQuantizationSpec((first, node))
        # the edge the others share with comes first: torchao creates each group's observer
        # from the first edge it meets, which must not be a shared one (an unquantized producer
        # of a later input would otherwise meet an edge that has no observer yet)
        inputs = {first: input_spec(first, specs["act"])}
        inputs.update({t: shared for t in tensors[1:] if t is not first})
        annotate(node, inputs, shared)


@dataclass(frozen=True)
class FixedOutput(Rule):
    """Input gets activation parameters; the output the fixed ones the int8 kernel requires."""

    scale: float = 1.0
    zero_point: int = 0

    def annotate(self, node, scheme, specs):
        x = node.args[0]
        if not is_float_tensor(x):
            return
        annotate(node, {x: input_spec(x, specs["act"])}, scheme.fixed(self.scale, self.zero_point))


def _tensor_args(node: Node) -> list[Node]:
    seen: list[Node] = []
    for a in node.args:
        if isinstance(a, Node) and is_float_tensor(a) and a not in seen:
            seen.append(a)
    return seen


# --------------------------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------------------------
RULES: Sequence[Rule] = (
    # conv / fully-connected; ordered first so that their fused activations are claimed first
    Weighted("conv", (aten.conv1d.default, aten.conv2d.default)),
    Weighted("linear", (aten.linear.default,), per_channel_allowed=False),
    Weighted("addmm", (aten.addmm.default,), input_index=1, weight_index=2, bias_index=0,
             weight_ch_axis=1, per_channel_allowed=False),
    # element-wise ops with their own output parameters
    Elementwise("add", (aten.add.Tensor, aten.add_.Tensor)),
    Elementwise("mul", (aten.mul.Tensor, aten.mul_.Tensor)),
    Elementwise("abs", (aten.abs.default,)),
    Elementwise("relu", _RELU_TARGETS),
    Elementwise("hardtanh", _HARDTANH_TARGETS),
    Elementwise("hardswish", (aten.hardswish.default, aten.hardswish_.default)),
    # fixed output parameters
    FixedOutput("sigmoid", (aten.sigmoid.default,), SIGMOID_SCALE, SIGMOID_ZERO_POINT),
    FixedOutput("softmax", (aten.softmax.int,), SOFTMAX_SCALE, SOFTMAX_ZERO_POINT),
    FixedOutput("tanh", (aten.tanh.default, aten.tanh_.default), TANH_SCALE, TANH_ZERO_POINT),
    # output shares the input's parameters
    SharedIO("pool", (aten.max_pool2d.default, aten.avg_pool2d.default,
                      aten.adaptive_avg_pool2d.default)),
    SharedIO("mean", (aten.mean.dim,)),
    SharedIO("pad", (aten.pad.default, aten.constant_pad_nd.default)),
    SharedIO("data_movement", (aten.view.default, aten.reshape.default, aten.flatten.using_ints,
                               aten.permute.default, aten.slice.Tensor, aten.dropout.default)),
    Concat("cat", (aten.cat.default,)),
)

RULE_BY_TARGET: dict = {t: r for r in RULES for t in r.targets}

# Rules whose ops the NPU never runs: quantized so that the int8 graph stays whole around them,
# run on the CPU, with the reason (``tests/lowering/test_op_table.py`` checks every other rule
# has a lowering).
CPU_ONLY_RULES: dict[str, str] = {}
