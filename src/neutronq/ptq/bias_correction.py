"""Empirical bias correction after calibration, before ``convert_pt2e`` (after Nagel et al.
2019, "Data-Free Quantization Through Weight Equalization and Bias Correction")."""

from __future__ import annotations

from typing import Iterable, Optional

import torch
from torch.fx import GraphModule, Node

from neutronq.devices import model_device
from neutronq.fx import get_attr_value, set_attr_value
from neutronq.ptq.observed import FLOAT_BIASES_META, FLOAT_WEIGHTS_META, ObserverRounding, fake_quantize
from neutronq.ptq.samples import as_input_tuple

__all__ = ["correct_biases"]

_BIASED = {
    torch.ops.aten.conv1d.default: 1,
    torch.ops.aten.conv2d.default: 1,
    torch.ops.aten.linear.default: -1,
}


def _bias_attr(node: Node) -> Optional[Node]:
    """The get_attr node of a conv / linear bias, looking through observers."""
    bias = node.args[2] if len(node.args) > 2 else None
    while isinstance(bias, Node) and bias.op == "call_module":
        bias = bias.args[0]
    return bias if isinstance(bias, Node) and bias.op == "get_attr" else None


def correct_biases(prepared: GraphModule, calibration_inputs: Iterable) -> dict:
    """Bias correction of a calibrated ``prepare_pt2e`` model, in place (after Nagel et al. 2019).

    Each conv / linear with a bias is corrected for the mean error it introduces itself: int8
    rounds its weights (``W -> W_q``, with the weight observer's parameters) and its input
    (``x -> q(x)``, with the input observer's parameters), which shifts the mean of its output by
    ``W_q E[q(x)] - W E[x]``, measured per channel on the float model over the calibration data.
    That shift is subtracted from the bias; the int32 bias takes the new value at
    ``convert_pt2e``. Errors that reach a layer from the layers before it are not counted again
    there: each is corrected where it arises (an earlier version corrected every layer for its
    whole upstream error at once and over-corrected EfficientNet-Lite0 to -10 dB). Observers are
    not updated. The biases before correction are kept in
    ``prepared.meta["neutronq_float_biases"]`` (``neutronq.ptq.error_budget`` reads them).
    Returns the per-layer corrections (node name -> tensor added to the bias).
    """
    device = model_device(prepared)
    samples = [as_input_tuple(s, device) for s in calibration_inputs]
    if not samples:
        raise ValueError("correct_biases needs calibration inputs (got none).")
    layers = [
        n for n in prepared.graph.nodes
        if n.op == "call_function" and n.target in _BIASED and _bias_attr(n) is not None
        and isinstance(n.args[1], Node) and n.args[1].op == "call_module"
    ]
    inputs = {n.args[0].name: _BIASED[n.target] for n in layers}
    float_means, quantized_means = _input_means(prepared, samples, inputs)
    corrections: dict[str, torch.Tensor] = {}
    float_biases = prepared.meta.setdefault(FLOAT_BIASES_META, {})
    for node in layers:
        attr = _bias_attr(node)
        bias = get_attr_value(prepared, attr)
        float_biases.setdefault(attr.target, bias.detach().clone())
        weight, weight_q = _weight_and_rounded(prepared, node.args[1])
        x = node.args[0].name
        shift = _apply(node, weight_q, quantized_means[x]) - _apply(node, weight, float_means[x])
        set_attr_value(prepared, attr, bias.detach() - shift.to(bias.dtype), requires_grad=False)
        corrections[node.name] = -shift
    return corrections


def _weight_and_rounded(prepared: GraphModule, observer_node: Node):
    """(float weight, its int8 rounding). After AdaRound the graph holds the rounded weights
    and ``prepared.meta`` the float ones, which the correction is measured against."""
    observer = prepared.get_submodule(observer_node.target)
    target = observer_node.args[0].target
    current = get_attr_value(prepared, target).detach().to(torch.float64)
    original = getattr(prepared, "meta", {}).get(FLOAT_WEIGHTS_META, {}).get(target)
    weight = current if original is None else original.detach().to(current.device, torch.float64)
    return weight, fake_quantize(observer, current)


def _apply(node: Node, weight: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """``weight`` applied to a constant input of per-channel ``mean``, per output channel."""
    mean = mean.to(torch.float64)
    if node.target is torch.ops.aten.linear.default:
        return weight @ mean
    groups = node.args[6] if len(node.args) > 6 else 1
    out_channels, in_per_group = weight.shape[0], weight.shape[1]
    per_pair = weight.reshape(out_channels, in_per_group, -1).sum(-1)  # [O, I/g]
    per_group = per_pair.reshape(groups, out_channels // groups, in_per_group)
    return torch.bmm(per_group, mean.reshape(groups, in_per_group, 1)).reshape(out_channels)


class _InputMeans(ObserverRounding):
    """Runs the prepared graph in float (observers pass values through) and sums, for chosen
    nodes, the per-channel means of their output and of its int8 rounding by their observer."""

    def __init__(self, gm: GraphModule, names: dict[str, int]):
        super().__init__(gm)
        self.names = names
        self.sums: dict[str, torch.Tensor] = {}
        self.q_sums: dict[str, torch.Tensor] = {}

    def run_node(self, n):
        out = super().run_node(n)
        dim = self.names.get(n.name)
        if dim is not None:
            rounded = fake_quantize(self.module.get_submodule(n.target), out, qparams=self.observer_qparams(n.target)) \
                if n.op == "call_module" else out
            for sums, value in ((self.sums, out), (self.q_sums, rounded)):
                moved = value.detach().movedim(dim, -1)
                sums[n.name] = sums.get(n.name, 0) + moved.reshape(-1, moved.shape[-1]).to(torch.float64).mean(0)
        return out


def _input_means(gm: GraphModule, samples: list, names: dict[str, int]):
    interp = _InputMeans(gm, names)
    with torch.no_grad():
        for inputs in samples:
            interp.run(*inputs)
    n = len(samples)
    return ({k: v / n for k, v in interp.sums.items()}, {k: v / n for k, v in interp.q_sums.items()})
