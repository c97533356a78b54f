"""Quantization rules, one entry per op family, all in this file.

Each rule says where quantize/dequantize go around the ops it covers, under the names that
``torch.export`` gives them (in-place forms included). Rules match ``node.target``: non-strict
export leaves no ``source_fn_stack`` metadata, so nothing here relies on it.

Adding an op is one entry in ``RULES`` (and one test in ``tests/quantizer/test_rules.py``).

Families:
  * ``Weighted``: conv / linear / addmm. Input and weight quantized, int32 bias derived from
    them; a following batch norm (QAT) and relu / relu6 / hardtanh(0, 6) become part of the
    unit, so no quantize/dequantize sits between them. Sigmoid and tanh are never fused.
  * ``Elementwise``: every tensor input and the output get their own activation parameters; a
    constant input (a ``get_attr``: a buffer, or a scalar that ``aten_passes.scalars_to_constants``
    made a tensor) is quantized like a weight (int8 symmetric, its own parameters).
  * ``SharedIO``: the output shares the input's parameters (pools, pad, data movement, mean):
    the NPU's kernels for them need equal input and output parameters.
  * ``Concat``: all inputs and the output share one set of parameters.
  * ``SharedInputs``: all tensor inputs and the output share one set of parameters (maximum /
    minimum, whose int8 kernels compare raw int8 values).
  * ``SharedIOValues``: ops with a (values, indices) output (``max.dim``): the values share the
    input's parameters, the indices stay unquantized.
  * ``FixedOutput``: the int8 kernel imposes the output parameters (sigmoid, softmax, tanh).
  * ``Parametric``: an activation with a learned slope tensor (prelu): input and output get
    activation parameters, the slope per-tensor int8 weight parameters.
  * ``Clamp``: clamp / hardtanh with scalar bounds: own output parameters when an int8 relu op
    has the range (relu, relu6, relu_n1_to_1, relu_0_to_1), else the input's (MAXIMUM / MINIMUM
    do not requantize).
  * ``SymmetricInputs``: activation inputs int8 symmetric (zero point 0), the output its own
    parameters (matmul of two activations: the NPU's batch matmul needs zero points 0).
"""

from __future__ import annotations

import dataclasses
import operator
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch.fx import Node
from torchao.quantization.pt2e.quantizer import (
    FixedQParamsQuantizationSpec,
    QuantizationAnnotation,
    QuantizationSpec,
    QuantizationSpecBase,
    SharedQuantizationSpec,
)
from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY

from neutronq.aten_passes.fuse_batch_norm_for_qat import qat_batch_norm
from neutronq.backend.scheme import (
    CLAMP_KERNEL_RANGES,
    FUSED_ACTIVATION_RANGES,
    SIGMOID_SCALE,
    SIGMOID_ZERO_POINT,
    SOFTMAX_SCALE,
    SOFTMAX_ZERO_POINT,
    TANH_SCALE,
    TANH_ZERO_POINT,
)
from neutronq.fx import clamp_range, get_attr_value, hardtanh_range, is_float_tensor, layer_name, single_user
from neutronq.quantizer.specs import QuantizationScheme, bias_safe_weight_scale

aten = torch.ops.aten

ANNOTATION_KEY = Q_ANNOTATION_KEY  # torchao's node.meta key of an annotation

# Activations the NPU (and TFLite) fuse into conv / fully-connected: relu, relu6, relu_n1_to_1.
_FUSABLE_HARDTANH_RANGES = tuple(r for r in FUSED_ACTIVATION_RANGES.values() if r[1] != float("inf"))
_RELU_TARGETS = (aten.relu.default, aten.relu_.default, aten.relu6.default, aten.relu6_.default)
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
    # where the op takes ``groups``, when per-channel weights need groups 1 (transposed convs:
    # their weight's channel axis holds out_channels / groups, the bias out_channels)
    groups_index: Optional[int] = None

    def annotate(self, node, scheme, specs):
        x, w = node.args[self.input_index], node.args[self.weight_index]
        if not (is_float_tensor(x) and is_float_tensor(w)):
            return
        bias = node.args[self.bias_index] if self.bias_index is not None and len(node.args) > self.bias_index else None
        per_channel = scheme.per_channel and self.per_channel_allowed
        if self.groups_index is not None and len(node.args) > self.groups_index and node.args[self.groups_index] != 1:
            per_channel = False
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
    """Every float tensor input and the output get their own activation parameters; constant
    inputs are quantized like weights."""

    def annotate(self, node, scheme, specs):
        inputs = {a: constant_spec(a, scheme) or input_spec(a, specs["act"]) for a in _tensor_args(node)}
        if inputs:
            annotate(node, inputs, specs["act"])


@dataclass(frozen=True)
class SharedIO(Rule):
    """The output shares the parameters of the first input. An op with several outputs (split,
    unbind, max_pool2d_with_indices) is quantized at its ``getitem``\ s: each float one shares
    the input's parameters (an integer output, such as pool indices, stays as it is)."""

    def annotate(self, node, scheme, specs):
        x = node.args[0]
        if not is_float_tensor(x):
            return
        shared = SharedQuantizationSpec((x, node))
        if isinstance(node.meta.get("val"), (tuple, list)):
            annotate(node, {x: input_spec(x, specs["act"])}, None)
            for user in node.users:
                if user.target is operator.getitem and is_float_tensor(user):
                    annotate(user, {}, shared)
            return
        annotate(node, {x: input_spec(x, specs["act"])}, shared)


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
class SharedInputs(Rule):
    """All float tensor inputs and the output share the first one's parameters (a constant input
    too: its int8 values are then comparable with the activation's)."""

    def annotate(self, node, scheme, specs):
        tensors = _tensor_args(node)
        if not tensors:
            return
        first = next((t for t in tensors if t.op != "get_attr"), tensors[0])
        shared = SharedQuantizationSpec((first, node))
        inputs = {first: input_spec(first, specs["act"])}  # first: see Concat
        inputs.update({t: shared for t in tensors if t is not first})
        annotate(node, inputs, shared)


@dataclass(frozen=True)
class SharedIOValues(Rule):
    """``(values, indices)`` ops: the values (``getitem 0``) share the input's parameters."""

    def annotate(self, node, scheme, specs):
        x = node.args[0]
        if not is_float_tensor(x):
            return
        annotate(node, {x: input_spec(x, specs["act"])}, None)
        for user in node.users:
            if user.target is operator.getitem and user.args[1] == 0:
                annotate(user, {}, SharedQuantizationSpec((x, node)))


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


def constant_spec(arg: Node, scheme: QuantizationScheme) -> Optional[QuantizationSpecBase]:
    """The weight spec (per tensor) of a constant operand of an element-wise op, else None."""
    return scheme.weight(per_channel=False) if arg.op == "get_attr" else None


@dataclass(frozen=True)
class Parametric(Rule):
    """Input and output get activation parameters; argument ``weight_index`` (prelu's slope) is
    quantized like a weight: int8 symmetric, per tensor (TFLite's PRELU takes one alpha scale)."""

    weight_index: int = 1

    def annotate(self, node, scheme, specs):
        x, w = node.args[0], node.args[self.weight_index]
        if not (is_float_tensor(x) and is_float_tensor(w)):
            return
        annotate(node, {x: input_spec(x, specs["act"]), w: scheme.weight(per_channel=False)}, specs["act"])


@dataclass(frozen=True)
class Clamp(Rule):
    """clamp / clip / hardtanh with scalar bounds. A range that an int8 relu op has
    (``CLAMP_KERNEL_RANGES``) gets its own output parameters (those ops requantize); any other
    range shares the input's, as the MAXIMUM / MINIMUM that lower it compare raw int8 values."""

    def annotate(self, node, scheme, specs):
        x = node.args[0]
        if not is_float_tensor(x):
            return
        if clamp_range(node) in CLAMP_KERNEL_RANGES.values():
            annotate(node, {x: input_spec(x, specs["act"])}, specs["act"])
        else:
            annotate(node, {x: input_spec(x, specs["act"])}, SharedQuantizationSpec((x, node)))


@dataclass(frozen=True)
class SymmetricInputs(Rule):
    """Every float tensor input int8 symmetric (zero point 0, [-127, 127]), the output its own
    activation parameters: the matmul of two activations. NXP's converter runs a batch matmul
    only with both input zero points 0 ("Neutron requirement", ExecuTorch 1.5.1
    ``backends/nxp/.../bmm_converter.py``; its quantizer's ``BMMPattern`` gives symmetric inputs).

    An input whose parameters are the free output parameters of its producer (seen through the
    data movement that shares them: view, transpose ...) makes that producer's output symmetric
    itself, so no requantization sits between them. A float producer's value gets symmetric
    parameters on the edge, a graph input is quantized symmetric once.

    An input with imposed parameters: tanh's (1/128, 0) are symmetric already and shared; a
    softmax's or sigmoid's (s, -128), the range [0, 255 s], is requantized on the edge to the
    fixed scale ``s * 512 / 257``, zero point 0 (``requantized_unsigned``)."""

    def annotate(self, node, scheme, specs):
        sym = symmetric_activation(specs)
        inputs = {}
        for a in _tensor_args(node):
            source = _make_symmetric(a, specs, sym)
            if source is None:
                inputs[a] = sym  # a float producer: its value quantized symmetric on the edge
            elif isinstance(source, FixedQParamsQuantizationSpec) and source.zero_point != 0:
                inputs[a] = requantized_unsigned(source)
            else:
                inputs[a] = SharedQuantizationSpec(a)
        if inputs:
            annotate(node, inputs, specs["act"])


def _make_symmetric(node: Node, specs: dict, sym) -> Optional[QuantizationSpecBase]:
    """Make the parameters that ``node``'s value carries symmetric where they are free: follow
    ops that share their input's parameters back to where the parameters are chosen (a
    producer's output, the input edge of a data-movement op, a graph input) and set ``sym``
    there. Returns the spec now in force there (``sym``, or the imposed ``FixedQParams``), or
    None when the value is not quantized (a float producer)."""
    n = node
    while True:
        ann = n.meta.get(ANNOTATION_KEY)
        if ann is None or not ann._annotated:
            if n.op == "placeholder":
                annotate(n, {}, sym)  # a graph input: quantized symmetric once
                return sym
            return None
        out = ann.output_qspec
        owner = out.edge_or_node[1] if isinstance(out, SharedQuantizationSpec) \
            and isinstance(out.edge_or_node, tuple) else None
        # a getitem of a split / unbind shares the split's input edge: follow it there
        if owner is not None and owner is not n and not (n.target is operator.getitem and owner is n.args[0]):
            owner = None
        if owner is not None:
            x = out.edge_or_node[0]  # shares its (or its split's) input edge's parameters
            owner_ann = ann if owner is n else owner.meta.get(ANNOTATION_KEY)
            edge = owner_ann.input_qspec_map.get(x)
            if isinstance(edge, SharedQuantizationSpec) and edge.edge_or_node is x:
                n = x
                continue
            if edge in (specs["act"], sym):
                if x.op == "placeholder" and not is_annotated(x):
                    annotate(x, {}, sym)
                    owner_ann.input_qspec_map[x] = SharedQuantizationSpec(x)
                else:
                    owner_ann.input_qspec_map[x] = sym
                return sym
            return edge
        if out in (specs["act"], sym):
            ann.output_qspec = sym  # the producer's own parameters become symmetric
            return sym
        return out


def requantized_unsigned(fixed: FixedQParamsQuantizationSpec) -> FixedQParamsQuantizationSpec:
    """Symmetric int8 parameters for a value with fixed parameters (s, z = qmin), range
    [0, 255 s]: scale s * 512 / 257, zero point 0 (values above 253 s, 0.988 for a softmax,
    saturate).

    Why this scale: the requantization s -> s' is exact in TFLite's integer arithmetic only when
    the multiplier s / s' lies in [0.5, 1): one rounding of a 31-bit fixed-point product. Below
    0.5 it rounds twice (to 2^-r of a step, then by the shift r), and ``1/256 -> 1/127``
    (multiplier 0.496, r = 1) lands one step from exact rounding on a quarter of the values
    (measured, LiteRT BUILTIN_REF). 257/512 is in [0.5, 1), and 257 x / 512 is never a rounding
    tie for x = q - z in [0, 255], where PyTorch (half to even) and TFLite (half away from zero)
    would differ."""
    return FixedQParamsQuantizationSpec(
        dtype=fixed.dtype, scale=fixed.scale * 512.0 / 257.0, zero_point=0,
        quant_min=-127, quant_max=127, qscheme=torch.per_tensor_symmetric)


def symmetric_activation(specs: dict) -> QuantizationSpecBase:
    """The activation spec of ``specs`` made symmetric: zero point 0, [-127, 127] (built once
    per scheme and kept in ``specs``)."""
    if "act_symmetric" not in specs:
        act = specs["act"]
        assert isinstance(act, QuantizationSpec)
        specs["act_symmetric"] = dataclasses.replace(
            act, qscheme=torch.per_tensor_symmetric, quant_min=-127, quant_max=127)
    return specs["act_symmetric"]


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
    Elementwise("hardswish", (aten.hardswish.default, aten.hardswish_.default)),
    # unary activations and math functions (ops-unary): own output parameters unless said
    Clamp("hardtanh", _HARDTANH_TARGETS),
    Clamp("clamp", (aten.clamp.default, aten.clamp_.default, aten.clip.default, aten.clip_.default)),
    Elementwise("hardsigmoid", (aten.hardsigmoid.default, aten.hardsigmoid_.default)),
    Elementwise("gelu", (aten.gelu.default, aten.gelu_.default)),
    Elementwise("leaky_relu", (aten.leaky_relu.default, aten.leaky_relu_.default)),
    Parametric("prelu", (aten.prelu.default,)),
    Elementwise("silu", (aten.silu.default, aten.silu_.default)),
    Elementwise("elu", (aten.elu.default, aten.elu_.default)),
    Elementwise("exp", (aten.exp.default, aten.exp_.default)),
    Elementwise("log", (aten.log.default, aten.log_.default)),
    Elementwise("rsqrt", (aten.rsqrt.default, aten.rsqrt_.default)),
    Elementwise("sqrt", (aten.sqrt.default, aten.sqrt_.default)),
    Elementwise("neg", (aten.neg.default, aten.neg_.default)),
    # fixed output parameters
    FixedOutput("sigmoid", (aten.sigmoid.default,), SIGMOID_SCALE, SIGMOID_ZERO_POINT),
    FixedOutput("softmax", (aten.softmax.int,), SOFTMAX_SCALE, SOFTMAX_ZERO_POINT),
    FixedOutput("tanh", (aten.tanh.default, aten.tanh_.default), TANH_SCALE, TANH_ZERO_POINT),
    # output shares the input's parameters
    SharedIO("pool", (aten.max_pool2d.default, aten.avg_pool2d.default,
                      aten.adaptive_avg_pool2d.default)),
    SharedIO("pad", (aten.pad.default, aten.constant_pad_nd.default)),
    SharedIO("data_movement", (aten.view.default, aten.reshape.default, aten.flatten.using_ints,
                               aten.permute.default, aten.slice.Tensor, aten.dropout.default)),
    Concat("cat", (aten.cat.default,)),
    # --- binary ops with constants and scalars, reductions (ops-binary) ---------------------------
    # scalars and constant divisors are constants by then (aten_passes.scalars_to_constants)
    Elementwise("sub", (aten.sub.Tensor, aten.sub_.Tensor)),
    Elementwise("div", (aten.div.Tensor, aten.div_.Tensor)),  # by an activation: CPU_ONLY_RULES
    Elementwise("pow", (aten.pow.Tensor_Scalar, aten.square.default)),
    SharedInputs("maximum", (aten.maximum.default,)),
    SharedInputs("minimum", (aten.minimum.default,)),
    SharedIO("mean", (aten.mean.dim, aten.mean.default)),
    # a sum's range is up to N times its input's: own output parameters (lowered as a MEAN whose
    # output scale is the sum's / N)
    Elementwise("sum", (aten.sum.dim_IntList, aten.sum.default)),
    SharedIO("amax", (aten.amax.default, aten.max.default)),
    SharedIO("amin", (aten.amin.default, aten.min.default)),
    SharedIOValues("max_dim", (aten.max.dim, aten.min.dim)),
    # --- structural ops (ops-structure): transposed and 'same' convs, resizes, 1-D pools, the
    # remaining data movement, multi-output splits
    Weighted("conv_transpose", (aten.conv_transpose1d.default, aten.conv_transpose2d.input),
             weight_ch_axis=1, groups_index=6),  # weights [in, out / groups, kH, kW]
    Weighted("conv_same", (aten.conv1d.padding, aten.conv2d.padding)),  # padding="same" / "valid"
    SharedIO("upsample", (aten.upsample_nearest2d.vec, aten.upsample_bilinear2d.vec)),
    SharedIO("pool1d", (aten.max_pool1d.default, aten.avg_pool1d.default,
                        aten.max_pool2d_with_indices.default)),  # values only: indices stay int64
    SharedIO("reshape_transpose", (aten.squeeze.default, aten.squeeze.dim, aten.squeeze.dims,
                                   aten.unsqueeze.default, aten.unflatten.int, aten.transpose.int,
                                   aten.t.default, aten.select.int)),
    SharedIO("split", (aten.split.Tensor, aten.split_with_sizes.default, aten.chunk.default,
                       aten.unbind.int)),
    SharedIO("expand", (aten.expand.default, aten.expand_as.default)),
    # --- attention: the matmul of two activations (BATCH_MATMUL) ------------------------------------
    SymmetricInputs("matmul", (aten.matmul.default, aten.bmm.default, aten.mm.default)),
)

RULE_BY_TARGET: dict = {t: r for r in RULES for t in r.targets}

# Rules whose ops the NPU never runs: quantized so that the int8 graph stays whole around them,
# run on the CPU, with the reason (``tests/lowering/test_op_table.py`` checks every other rule
# has a lowering).
CPU_ONLY_RULES: dict[str, str] = {
    # (ops-binary) division by a constant is a multiplication by the constant's reciprocal
    # (aten_passes.scalars_to_constants); what is left divides by an activation
    "div": ("division by an activation: TFLite's int8 DIV is wrong in LiteRT's reference kernels "
            "(quotients of numerators near their zero point by large divisors saturate to -128 / 127, "
            "so the host check cannot vouch for it), and NXP's NPU divides only by a static divisor "
            "(as a multiplication)"),
    # ops-structure
    "expand": ("expand (broadcast copy) has no conversion in NXP's Neutron converter (ExecuTorch "
               "1.5.1 backends/nxp has no expand_copy converter): it runs on the CPU, between int8 "
               "tensors of equal parameters"),
}
