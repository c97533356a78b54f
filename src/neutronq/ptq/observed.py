"""The observed graph: a calibrated ``prepare_pt2e`` model read as the int8 model it will
become, for the PTQ steps that work between calibration and ``convert_pt2e`` (bias correction,
AdaRound, distillation, the error budget).

  * ``fake_quantize(observer, t)``: ``t`` rounded as int8 holds it with the observer's parameters;
  * ``parameter_observers(gm)``: which observers watch constants (weights, biases);
  * ``ObserverRounding``: runs the graph with each kind of observer rounding or passing through
    (the float model, the int8 model, or either side alone), optionally with the float weights
    and biases the steps kept in ``gm.meta`` (``FLOAT_WEIGHTS_META``, ``FLOAT_BIASES_META``);
  * ``flat_outputs``: every output tensor of a model as one [batch, -1] matrix.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch.fx import GraphModule, Interpreter, Node
from torch.utils._pytree import tree_leaves

__all__ = [
    "FLOAT_WEIGHTS_META",
    "FLOAT_BIASES_META",
    "fake_quantize",
    "parameter_observers",
    "flat_outputs",
    "ObserverRounding",
]

# gm.meta keys of the float weights / biases a step replaced (AdaRound, distillation / bias
# correction, distillation), by get_attr target: the float model stays available to later steps.
FLOAT_WEIGHTS_META = "neutronq_float_weights"
FLOAT_BIASES_META = "neutronq_float_biases"


def fake_quantize(observer, t: torch.Tensor, dtype: torch.dtype = torch.float64,
                  straight_through: bool = False, qparams: Optional[tuple] = None) -> torch.Tensor:
    """``t`` rounded as int8 holds it with ``observer``'s parameters (per tensor or per channel),
    computed in ``dtype``. ``straight_through``: the rounding passes gradients as if it were the
    identity (the clamp does not), for training through it. ``qparams``: the observer's
    ``calculate_qparams()`` when the caller has it already (a histogram observer's search takes
    milliseconds)."""
    scale, zero_point = observer.calculate_qparams() if qparams is None else qparams
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
    (``fake_quantize``) or passing it through: ``round_weights`` / ``round_activations`` say
    which kind rounds, ``skip`` names activation observers left in float. A bias observer always
    passes (an int32 bias: its rounding is far below the rest); other modules (the batch guard)
    run as usual. With neither kind rounding it is the float model. ``straight_through``: the
    roundings pass gradients (for training through the int8 model). ``float_params``: the float
    weights and biases kept in ``gm.meta`` (from before AdaRound, bias correction and
    distillation) replace the graph's. Each observer's parameters are read once, when first
    used, into ``qparams`` (a dict several interpreters of one graph may share): the observers
    do not change while the interpreters run."""

    def __init__(self, gm: GraphModule, round_weights: bool = False, round_activations: bool = False,
                 skip: frozenset = frozenset(), straight_through: bool = False, float_params: bool = False,
                 qparams: Optional[dict] = None):
        super().__init__(gm)
        self.round_weights, self.round_activations, self.skip = round_weights, round_activations, skip
        self.straight_through = straight_through
        self.parameter_observers = parameter_observers(gm)
        self.qparams: dict[str, tuple] = {} if qparams is None else qparams  # may be shared
        self.float_params = {}
        if float_params:
            meta = getattr(gm, "meta", {})
            self.float_params = {**meta.get(FLOAT_WEIGHTS_META, {}), **meta.get(FLOAT_BIASES_META, {})}

    def fetch_attr(self, target: str):
        value = super().fetch_attr(target)
        kept = self.float_params.get(target)
        return value if kept is None else kept.to(value)  # the graph's dtype and device

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
        return fake_quantize(module, args[0], dtype=args[0].dtype, straight_through=self.straight_through,
                             qparams=self.observer_qparams(target))

    def observer_qparams(self, target: str) -> tuple:
        """(scale, zero point) of the observer ``target``, computed once."""
        if target not in self.qparams:
            self.qparams[target] = self.module.get_submodule(target).calculate_qparams()
        return self.qparams[target]
