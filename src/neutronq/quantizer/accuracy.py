"""Accuracy steps on top of the Neutron int8 scheme, each turned on with one quantizer option.

* per-module / per-op scheme overrides (``NeutronQuantizer(..., overrides={...})``): which
  observer, and per-channel or not, for part of the graph — ``SchemeOverrides``;
* cross-layer equalization before annotation (``equalization=True``): the graph pass
  ``neutronq.aten_passes.cross_layer_equalization``;
* empirical bias correction after calibration (``bias_correction=True``): ``correct_biases``,
  called by ``calibrate_and_quantize`` or by hand between calibration and ``convert_pt2e``;
* ``recommended(neutron_target_spec, per_channel=...)``: the preset that combines them.

All of them keep the lowered graph standard: quantize / dequantize around aten ops.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Iterable, Optional

import torch
from torch.fx import GraphModule, Interpreter, Node
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

from neutronq.quantizer.specs import QuantizationScheme

__all__ = [
    "SchemeOverrides",
    "pre_annotation_transforms",
    "correct_biases",
    "RECOMMENDED_OPTIONS",
    "recommended_options",
    "recommended",
    "module_path",
]

_OVERRIDABLE = ("activation_observer", "weight_observer", "per_channel")


# --------------------------------------------------------------------------------------------
# per-module / per-op overrides
# --------------------------------------------------------------------------------------------
def module_path(node: Node) -> Optional[str]:
    """The path (as in ``named_modules()``) of the innermost module a node was traced in."""
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return None
    return list(stack.values())[-1][0]


def _is_op_key(key: str) -> bool:
    return key.startswith("aten.") or key.startswith("quantized_decomposed.")


class SchemeOverrides:
    """Scheme fields changed per op name or per module path (see ``NeutronQuantizer``)."""

    def __init__(self, base: QuantizationScheme, overrides: Optional[dict]):
        self.base = base
        self.op_schemes: dict[str, QuantizationScheme] = {}
        self.module_overrides: list[tuple[str, dict]] = []
        self._matched: set[str] = set()
        for key, fields in (overrides or {}).items():
            if not isinstance(key, str) or not isinstance(fields, dict):
                raise TypeError(
                    "overrides maps a module path or op name (str) to a dict of scheme fields, e.g. "
                    "{'_blocks.3': {'activation_observer': 'mse'}}; got "
                    f"{key!r}: {fields!r}."
                )
            unknown = set(fields) - set(_OVERRIDABLE)
            if unknown:
                raise ValueError(
                    f"overrides[{key!r}] sets {sorted(unknown)}; an override can set only "
                    f"{', '.join(_OVERRIDABLE)}."
                )
            dataclasses.replace(base, **fields)  # validates the observer names now
            if _is_op_key(key):
                self.op_schemes[key] = dataclasses.replace(base, **fields)
            else:
                self.module_overrides.append((key, dict(fields)))
        # outer modules first, so that inner ones win
        self.module_overrides.sort(key=lambda kv: kv[0].count(".") + (kv[0] != ""))

    def scheme_for(self, node: Node) -> QuantizationScheme:
        if not self.op_schemes and not self.module_overrides:
            return self.base
        op = str(node.target)
        scheme = self.op_schemes.get(op, self.base)
        if op in self.op_schemes:
            self._matched.add(op)
        path = module_path(node)
        if path is not None:
            for key, fields in self.module_overrides:
                if key == "" or path == key or path.startswith(key + "."):
                    scheme = dataclasses.replace(scheme, **fields)
                    self._matched.add(key)
        return scheme

    def check_all_matched(self, model: GraphModule) -> None:
        keys = set(self.op_schemes) | {k for k, _ in self.module_overrides}
        missing = sorted(keys - self._matched)
        if missing:
            paths = sorted({p for n in model.graph.nodes if (p := module_path(n))})
            raise ValueError(
                f"NeutronQuantizer overrides matched no quantized op: {missing}. Keys are module "
                f"paths (this graph has e.g. {paths[:5]}) or op names such as 'aten.conv2d.default'."
            )


# --------------------------------------------------------------------------------------------
# steps before annotation
# --------------------------------------------------------------------------------------------
def pre_annotation_transforms(quantizer) -> list:
    """The accuracy passes ``NeutronQuantizer.transform_for_annotation`` runs, in order."""
    transforms = []
    if getattr(quantizer, "equalization", False):
        from neutronq.aten_passes.cross_layer_equalization import CrossLayerEqualization

        transforms.append(CrossLayerEqualization())
    return transforms


# --------------------------------------------------------------------------------------------
# empirical bias correction (after calibration, before convert)
# --------------------------------------------------------------------------------------------
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


class _ChannelMeans(Interpreter):
    """Runs a graph and sums the per-channel means of chosen nodes' outputs; with
    ``skip_observers`` the prepared model's observers pass values through untouched."""

    def __init__(self, gm: GraphModule, names: dict[str, int], skip_observers: bool):
        super().__init__(gm)
        self.names, self.skip_observers = names, skip_observers
        self.sums: dict[str, torch.Tensor] = {}

    def call_module(self, target, args, kwargs):
        if self.skip_observers and target.startswith("activation_post_process_"):
            return args[0]
        return super().call_module(target, args, kwargs)

    def run_node(self, n):
        out = super().run_node(n)
        dim = self.names.get(n.name)
        if dim is not None:
            moved = out.detach().movedim(dim, -1)
            mean = moved.reshape(-1, moved.shape[-1]).to(torch.float64).mean(0)
            self.sums[n.name] = self.sums.get(n.name, 0) + mean
        return out


def _channel_means(gm: GraphModule, samples: list, names: dict[str, int], skip_observers: bool):
    interp = _ChannelMeans(gm, names, skip_observers)
    with torch.no_grad():
        for inputs in samples:
            interp.run(*inputs)
    return {k: v / len(samples) for k, v in interp.sums.items()}


def correct_biases(prepared: GraphModule, calibration_inputs: Iterable, iterations: int = 2) -> dict:
    """Empirical bias correction of a calibrated ``prepare_pt2e`` model, in place.

    For each conv / linear with a bias, the mean per-channel difference between its output in
    the quantized model (``convert_pt2e`` of a copy: int8 inputs and weights, every layer before
    it quantized) and in float is subtracted from its bias. All layers are corrected together;
    ``iterations`` repeats it so that each layer sees its predecessors already corrected. The
    int32 bias takes the new value at ``convert_pt2e``. Observers are not updated. Returns the
    per-layer corrections (node name -> tensor).
    """
    from neutronq.quantizer.utils import as_input_tuple

    samples = [as_input_tuple(s) for s in calibration_inputs]
    if not samples:
        raise ValueError("correct_biases needs calibration inputs (got none).")
    names = {
        n.name: _BIASED[n.target]
        for n in prepared.graph.nodes
        if n.op == "call_function" and n.target in _BIASED and _bias_attr(n) is not None
    }
    float_means = _channel_means(prepared, samples, names, skip_observers=True)
    totals: dict[str, torch.Tensor] = {}
    for _ in range(int(iterations)):
        quantized = convert_pt2e(copy.deepcopy(prepared))
        present = {n.name for n in quantized.graph.nodes}
        quant_means = _channel_means(quantized, samples, {k: v for k, v in names.items() if k in present},
                                     skip_observers=False)
        for node in prepared.graph.nodes:
            if node.name not in quant_means:
                continue
            attr = _bias_attr(node)
            bias = _get_tensor(prepared, attr.target)
            shift = (quant_means[node.name] - float_means[node.name]).to(bias.dtype)
            _replace_tensor(prepared, attr.target, bias.detach() - shift)
            totals[node.name] = totals.get(node.name, 0) - shift
    return totals


def _get_tensor(gm: GraphModule, target: str) -> torch.Tensor:
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _replace_tensor(gm: GraphModule, target: str, value: torch.Tensor) -> None:
    """A new tensor, never an in-place change: it may be the user's own model parameter."""
    *path, name = target.split(".")
    owner = gm
    for part in path:
        owner = getattr(owner, part)
    if name in owner._parameters:
        owner._parameters[name] = torch.nn.Parameter(value.clone(), requires_grad=False)
    elif name in owner._buffers:
        owner._buffers[name] = value.clone()
    else:
        setattr(owner, name, value.clone())


# --------------------------------------------------------------------------------------------
# the preset
# --------------------------------------------------------------------------------------------
RECOMMENDED_OPTIONS = {
    # Measured on EfficientNet-Lite0 (benchmarks/bench_accuracy.py, 100 calibration crops, first
    # 100 evaluation crops; top-1 agreement / logits SQNR against float):
    #   per tensor:  baseline 45 % / 3.8 dB, equalization 58 % / 7.6 dB, MSE weights 38 % / 3.5 dB,
    #                bias correction 0 % / -10.5 dB (it over-corrects: every layer is corrected for
    #                the error of all layers before it, at once; kept as an option, not in the preset)
    #   per channel: baseline 90 % / 17.2 dB, equalization 90 % / 16.5 dB, MSE weights 90 % / 17.1 dB
    # so the preset is equalization for per-tensor weights, and nothing more for per-channel.
    False: {"equalization": True, "bias_correction": False, "weight_observer": "minmax"},
    True: {"equalization": False, "bias_correction": False, "weight_observer": "minmax"},
}


def recommended_options(per_channel: bool = False) -> dict:
    """The ``NeutronQuantizer`` options of the recommended preset, for either weight scheme."""
    return {**RECOMMENDED_OPTIONS[bool(per_channel)], "per_channel": bool(per_channel)}


def recommended(neutron_target_spec, per_channel: bool = False, **overrides):
    """A ``NeutronQuantizer`` (PTQ) with the recommended accuracy steps; keyword arguments
    change single options. Quantize with ``calibrate_and_quantize`` (it applies bias correction)."""
    from neutronq.quantizer.neutron_quantizer import NeutronQuantizer

    return NeutronQuantizer(neutron_target_spec, **{**recommended_options(per_channel), **overrides})
