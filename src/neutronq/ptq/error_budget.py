"""Where a model's int8 error comes from: weights or activations, and which activations.

``error_budget(prepared, inputs)`` runs a calibrated ``prepare_pt2e`` model (before
``convert_pt2e``) three ways against its float self and reports the output SQNR of each:

* ``full``: int8 weights and int8 activations, every tensor rounded with its observer's
  parameters as ``convert_pt2e`` will (the int32 bias rounding aside);
* ``weights_only``: int8 weights, float activations;
* ``activations_only``: float weights (the ones before AdaRound, with the biases before bias
  correction), int8 activations.

Rounding noise adds roughly as power, so the two partial figures say which side to work on: a
technique on the other side cannot lift ``full`` much above the lower of the two (weights fitted
to the int8 activations, as sequential AdaRound fits them, offset a little of their error). With
``top_activations=k`` it also leaves each activation in float in turn (all else int8) and lists
the ``k`` whose rounding costs the most dB. The float model is the prepared graph with every
observer passed through, the kept float weights and biases put back (exact: cross-layer
equalization rescales the float model without changing it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import torch
from torch.fx import GraphModule, Node

from neutronq._progress import progress
from neutronq.devices import model_device
from neutronq.metrics import sqnr_db, top1_agreement
from neutronq.ptq.observed import ObserverRounding, flat_outputs, parameter_observers
from neutronq.ptq.samples import as_input_tuple

__all__ = ["ErrorBudget", "error_budget", "outputs_with_rounding"]


@dataclass
class ErrorBudget:
    """Output SQNR (dB) and top-1 agreement against the float model, per rounding source."""

    samples: int
    full_db: float
    weights_only_db: float
    activations_only_db: float
    full_top1: float
    # (observer node, the node it rounds, dB gained when only it stays float), largest first
    activations: list[tuple[str, str, float]] = field(default_factory=list)

    @property
    def limited_by(self) -> str:
        return "weights" if self.weights_only_db < self.activations_only_db else "activations"

    def as_dict(self) -> dict:
        return {
            "samples": self.samples,
            "full_db": self.full_db,
            "full_top1_agreement": self.full_top1,
            "weights_only_db": self.weights_only_db,
            "activations_only_db": self.activations_only_db,
            "limited_by": self.limited_by,
            "activations": [{"observer": o, "rounds": n, "gain_db": g} for o, n, g in self.activations],
        }

    def summary(self) -> str:
        lines = [
            f"int8 error budget on {self.samples} samples (output SQNR vs float):",
            f"  weights and activations int8: {self.full_db:.2f} dB (top-1 agreement {self.full_top1:.1%})",
            f"  only weights int8:            {self.weights_only_db:.2f} dB",
            f"  only activations int8:        {self.activations_only_db:.2f} dB",
            f"  mostly limited by the {self.limited_by}: "
            + ("AdaRound / per-channel weights / equalization act there"
               if self.limited_by == "weights" else
               "weight-side techniques cannot lift the result much above the activations-only figure"),
        ]
        for observer, rounds, gain in self.activations:
            lines.append(f"  activation after {rounds}: {gain:+.2f} dB if left in float")
        return "\n".join(lines)


def _activation_observers(gm: GraphModule) -> list[Node]:
    parameters = parameter_observers(gm)
    return [n for n in gm.graph.nodes if n.op == "call_module" and n.target not in parameters
            and hasattr(gm.get_submodule(n.target), "calculate_qparams")]


def outputs_with_rounding(gm: GraphModule, inputs: list[tuple], **mode) -> torch.Tensor:
    """The outputs of ``gm`` on ``inputs`` as one [samples, -1] matrix, run with
    ``ObserverRounding(gm, **mode)`` (which observers round, and which weights)."""
    interpreter = ObserverRounding(gm, **mode)
    with torch.no_grad():
        return torch.cat([flat_outputs(interpreter.run(*x), len(x[0])) for x in inputs])


def _check_calibrated(gm: GraphModule) -> None:
    observers = {n.target: gm.get_submodule(n.target) for n in _activation_observers(gm)}
    unseen = [target for target, observer in observers.items()
              if isinstance(getattr(observer, "min_val", None), torch.Tensor) and observer.min_val.numel() == 1
              and torch.isinf(observer.min_val).item()]
    if unseen:
        raise ValueError(f"error_budget: {len(unseen)} activation observers have seen no data "
                         f"(e.g. {', '.join(unseen[:3])}): calibrate the prepared model first "
                         "(neutronq.prepare_and_calibrate does).")


def error_budget(prepared: GraphModule, inputs: Iterable, *, top_activations: int = 0) -> ErrorBudget:
    """The error budget of a calibrated ``prepare_pt2e`` model (see the module docstring) on
    ``inputs`` (tensors or tuples of model inputs, e.g. held-out samples). ``top_activations``:
    how many of the costliest activations to list (each costs one more pass over ``inputs``)."""
    device = model_device(prepared)
    samples = [as_input_tuple(x, device) for x in inputs]
    if not samples:
        raise ValueError("error_budget needs inputs to run (got none): pass held-out samples.")
    if not parameter_observers(prepared):
        raise ValueError("error_budget needs the calibrated prepare_pt2e model (with observers), "
                         "not a converted one: call it before convert_pt2e, e.g. on the model "
                         "neutronq.prepare_and_calibrate returns.")
    _check_calibrated(prepared)
    qparams: dict = {}  # every observer's parameters, computed once for all the runs below
    reference = outputs_with_rounding(prepared, samples, round_weights=False, round_activations=False,
                                      float_params=True, qparams=qparams)
    full = outputs_with_rounding(prepared, samples, round_weights=True, round_activations=True, float_params=False,
                                 qparams=qparams)
    weights_only = outputs_with_rounding(prepared, samples, round_weights=True, round_activations=False,
                                         float_params=False, qparams=qparams)
    activations_only = outputs_with_rounding(prepared, samples, round_weights=False, round_activations=True,
                                             float_params=True, qparams=qparams)
    full_db = sqnr_db(reference, full)
    ranked = []
    if top_activations > 0:
        for node in progress(_activation_observers(prepared), desc="error budget: activations", unit="activation"):
            out = outputs_with_rounding(prepared, samples, round_weights=True, round_activations=True,
                                        float_params=False, skip=frozenset({node.target}), qparams=qparams)
            ranked.append((node.target, node.args[0].name, sqnr_db(reference, out) - full_db))
        ranked.sort(key=lambda r: -r[2])
    return ErrorBudget(
        samples=len(reference),
        full_db=full_db,
        weights_only_db=sqnr_db(reference, weights_only),
        activations_only_db=sqnr_db(reference, activations_only),
        full_top1=top1_agreement(reference, full),
        activations=ranked[:top_activations],
    )
