"""Accuracy steps on top of the Neutron int8 scheme, each turned on with one quantizer option.

* per-module / per-op scheme overrides (``NeutronQuantizer(..., overrides={...})``): which
  observer, and per-channel or not, for part of the graph — ``SchemeOverrides``;
* cross-layer equalization before annotation (``equalization=True``): the graph pass
  ``neutronq.aten_passes.cross_layer_equalization``;
* adaptive rounding of weights after calibration (``adaround=True``):
  ``neutronq.quantizer.adaround.adaround_weights``, called by ``calibrate_and_quantize`` or by
  hand between calibration and ``convert_pt2e``;
* empirical bias correction after calibration (``bias_correction=True``): ``correct_biases``,
  called by ``calibrate_and_quantize`` (after AdaRound) or by hand between calibration and
  ``convert_pt2e``;
* ``recommended(neutron_target_spec, per_channel=...)``: the preset that combines them.

All of them keep the lowered graph standard: quantize / dequantize around aten ops.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Optional

import torch
from torch.fx import GraphModule, Interpreter, Node
from torch.utils._pytree import tree_leaves

from neutronq.quantizer.specs import QuantizationScheme

__all__ = [
    "SchemeOverrides",
    "pre_annotation_transforms",
    "correct_biases",
    "FLOAT_BIASES_META",
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
FLOAT_BIASES_META = "neutronq_float_biases"

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
    ``prepared.meta["neutronq_float_biases"]`` (``neutronq.quantizer.error_budget`` reads them).
    Returns the per-layer corrections (node name -> tensor added to the bias).
    """
    from neutronq.quantizer.utils import as_input_tuple

    samples = [as_input_tuple(s) for s in calibration_inputs]
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
        bias = _get_tensor(prepared, attr.target)
        float_biases.setdefault(attr.target, bias.detach().clone())
        weight, weight_q = _weight_and_rounded(prepared, node.args[1])
        x = node.args[0].name
        shift = _apply(node, weight_q, quantized_means[x]) - _apply(node, weight, float_means[x])
        _replace_tensor(prepared, attr.target, bias.detach() - shift.to(bias.dtype))
        corrections[node.name] = -shift
    return corrections


def _fake_quantize(observer, t: torch.Tensor, dtype: torch.dtype = torch.float64,
                   straight_through: bool = False) -> torch.Tensor:
    """``t`` rounded as int8 holds it with ``observer``'s parameters (per tensor or per channel),
    computed in ``dtype``. ``straight_through``: the rounding passes gradients as if it were the
    identity (the clamp does not), for training through it."""
    scale, zero_point = observer.calculate_qparams()
    t = t.to(dtype)
    if scale.numel() > 1:
        shape = [1] * t.dim()
        shape[getattr(observer, "ch_axis", 0)] = -1
        s, z = scale.to(dtype).reshape(shape), zero_point.to(dtype).reshape(shape)
    else:
        s, z = float(scale), float(zero_point)
    x = t / s
    rounded = x + (torch.round(x) - x).detach() if straight_through else torch.round(x)
    return (torch.clamp(rounded + z, observer.quant_min, observer.quant_max) - z) * s


def _weight_and_rounded(prepared: GraphModule, observer_node: Node):
    """(float weight, its int8 rounding). After AdaRound the graph holds the rounded weights
    and ``prepared.meta`` the float ones, which the correction is measured against."""
    from neutronq.quantizer.adaround import FLOAT_WEIGHTS_META

    observer = prepared.get_submodule(observer_node.target)
    target = observer_node.args[0].target
    current = _get_tensor(prepared, target).detach().to(torch.float64)
    original = getattr(prepared, "meta", {}).get(FLOAT_WEIGHTS_META, {}).get(target)
    weight = current if original is None else original.detach().to(torch.float64)
    return weight, _fake_quantize(observer, current)


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


def parameter_observers(gm: GraphModule) -> dict[str, str]:
    """Observer target -> "weight" or "bias", for the observers of constants (get_attr nodes)."""
    kinds = {}
    for n in gm.graph.nodes:
        if n.op == "call_module" and n.args and isinstance(n.args[0], Node) and n.args[0].op == "get_attr":
            is_bias = any(len(u.args) > 2 and u.args[2] is n for u in n.users)
            kinds[n.target] = "bias" if is_bias else "weight"
    return kinds


def flat_outputs(output, batch: int) -> torch.Tensor:
    """Every tensor of a model's output (a tensor, or a tuple / list / dict of them), as [batch, -1]."""
    leaves = [t for t in tree_leaves(output) if isinstance(t, torch.Tensor)]
    return torch.cat([t.reshape(batch, -1).float() for t in leaves], dim=1)


class ObserverRounding(Interpreter):
    """Runs a prepared graph with each observer either rounding its value as int8 holds it
    (``_fake_quantize``) or passing it through: ``round_weights`` / ``round_activations`` say
    which kind rounds, ``skip`` names activation observers left in float. A bias observer always
    passes (an int32 bias: its rounding is far below the rest); other modules (the batch guard)
    run as usual. With neither kind rounding it is the float model. ``straight_through``: the
    roundings pass gradients (for training through the int8 model). ``float_params``: the float
    weights and biases kept in ``gm.meta`` (from before AdaRound, bias correction and
    distillation) replace the graph's."""

    def __init__(self, gm: GraphModule, round_weights: bool = False, round_activations: bool = False,
                 skip: frozenset = frozenset(), straight_through: bool = False, float_params: bool = False):
        super().__init__(gm)
        self.round_weights, self.round_activations, self.skip = round_weights, round_activations, skip
        self.straight_through = straight_through
        self.parameter_observers = parameter_observers(gm)
        self.float_params = {}
        if float_params:
            from neutronq.quantizer.adaround import FLOAT_WEIGHTS_META

            meta = getattr(gm, "meta", {})
            self.float_params = {**meta.get(FLOAT_WEIGHTS_META, {}), **meta.get(FLOAT_BIASES_META, {})}

    def fetch_attr(self, target: str):
        value = super().fetch_attr(target)
        kept = self.float_params.get(target)
        return value if kept is None else kept.to(value.dtype)

    def call_module(self, target, args, kwargs):
        module = self.module.get_submodule(target)
        if not hasattr(module, "calculate_qparams"):
            return super().call_module(target, args, kwargs)
        kind = self.parameter_observers.get(target)
        if kind == "bias":
            return args[0]
        rounds = self.round_weights if kind == "weight" else (self.round_activations and target not in self.skip)
        if not rounds:
            return args[0]
        return _fake_quantize(module, args[0], dtype=args[0].dtype, straight_through=self.straight_through)


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
            rounded = _fake_quantize(self.module.get_submodule(n.target), out) if n.op == "call_module" else out
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
    # 100 evaluation crops; top-1 agreement / logits SQNR against float): see docs/accuracy.md.
    # Per tensor, AdaRound is sequential and already fits each layer's output mean on the int8
    # model's own input; bias correction on top of it cost 1.1 dB (19.8 against 20.9 dB).
    False: {"equalization": True, "adaround": True, "bias_correction": False, "weight_observer": "minmax"},
    True: {"equalization": False, "adaround": True, "bias_correction": True, "weight_observer": "minmax"},
}


def recommended_options(per_channel: bool = False) -> dict:
    """The ``NeutronQuantizer`` options of the recommended preset, for either weight scheme."""
    return {**RECOMMENDED_OPTIONS[bool(per_channel)], "per_channel": bool(per_channel)}


def recommended(neutron_target_spec, per_channel: bool = False, **overrides):
    """A ``NeutronQuantizer`` (PTQ) with the recommended accuracy steps; keyword arguments
    change single options. Quantize with ``calibrate_and_quantize`` (it applies AdaRound and bias
    correction after calibration; a few minutes for an EfficientNet-sized model on one core)."""
    from neutronq.quantizer.neutron_quantizer import NeutronQuantizer

    return NeutronQuantizer(neutron_target_spec, **{**recommended_options(per_channel), **overrides})
