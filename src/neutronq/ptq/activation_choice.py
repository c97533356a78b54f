"""Activation ranges chosen on held-out samples (``NeutronQuantizer(activation_observer="auto")``).

Which rule sets an activation's int8 range best depends on the model. Measured on photos no step
saw (docs/accuracy.md, the activations-only SQNR: weights float, activations int8): on
MobileNetV2 with its ImageNet weights the 99.99th-percentile ranges gave 17.8 dB where torchao's
histogram search gave 11.7 dB; on EfficientNet-Lite0 the percentile cost 0.9 dB (24.6 against
25.6 dB) and the histogram search was best. No one observer is the safe default.

``"auto"`` calibrates with the histogram observer (``HeldOutChoiceObserver``). Then, for each of
``ACTIVATION_CANDIDATES`` (range rules that read the same calibration histogram, so nothing is
calibrated twice; the rule is set on the observer itself, so the int32 bias scales derived from
it follow), the model runs on the samples with its activations int8 and its weights float
(so that the weights' own error does not drown the comparison), and the candidate with the highest
output SQNR against the float model is kept. It is one choice of three for the whole model, not a
range per activation fitted to the samples, so it has little to overfit; ``prepare_and_calibrate``
makes it on the held-out share of the calibration samples (all of them with ``holdout=0``),
before AdaRound and the other steps, which then see the chosen ranges.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from torch.fx import GraphModule

from neutronq.metrics import sqnr_db
from neutronq.ptq.error_budget import outputs_with_rounding
from neutronq.quantizer.observers import HeldOutChoiceObserver
from neutronq.quantizer.specs import ACTIVATION_CANDIDATES

__all__ = ["ActivationChoice", "ACTIVATION_CHOICE_META", "choose_activation_ranges"]

log = logging.getLogger(__name__)
ACTIVATION_CHOICE_META = "neutronq_activation_choice"


@dataclass(frozen=True)
class ActivationChoice:
    """The candidate kept, and each candidate's activations-only SQNR (dB) on the samples."""

    chosen: str
    sqnr_db: dict
    activations: int  # how many activation observers it set
    samples: int
    heldout: bool  # measured on held-out samples (False: on the samples calibration saw)

    def figures(self) -> str:
        """How each candidate measured, e.g. for the report's observers row."""
        where = "held-out" if self.heldout else "calibration"
        figures = ", ".join(f"{name} {db:.2f} dB" for name, db in self.sqnr_db.items())
        return f"int8 activations, float weights, on {self.samples} {where} samples: {figures}"

    def summary(self) -> str:
        return f"activation ranges: {self.chosen} for {self.activations} activations ({self.figures()})"

    def as_dict(self) -> dict:
        return {"chosen": self.chosen, "sqnr_db": dict(self.sqnr_db), "activations": self.activations,
                "samples": self.samples, "heldout": self.heldout}


def _marked(prepared: GraphModule) -> list:
    """The ``HeldOutChoiceObserver`` modules of ``prepared``, each once (shared specs share one)."""
    found: dict[int, HeldOutChoiceObserver] = {}
    for node in prepared.graph.nodes:
        if node.op == "call_module":
            module = prepared.get_submodule(node.target)
            if type(module) is HeldOutChoiceObserver:
                found.setdefault(id(module), module)
    return list(found.values())


def choose_activation_ranges(prepared: GraphModule, samples: list, heldout: bool = True):
    """Gives every ``HeldOutChoiceObserver`` of the calibrated ``prepared`` model the range rule
    (``rule``) that measures best on ``samples`` (input tuples on the model's device), in place.
    Returns the ``ActivationChoice`` (also kept in ``prepared.meta[ACTIVATION_CHOICE_META]``), or
    None when no observer asked for the choice."""
    marked = _marked(prepared)
    if not marked:
        return None
    if not samples:
        raise ValueError("activation_observer='auto' needs calibration samples to choose the activation "
                         "ranges on (got none).")
    reference = outputs_with_rounding(prepared, samples, round_weights=False, round_activations=False,
                                      float_params=True)
    figures = {}
    for name in ACTIVATION_CANDIDATES:
        for observer in marked:
            observer.rule = name
        out = outputs_with_rounding(prepared, samples, round_weights=False, round_activations=True,
                                    float_params=True)
        figures[name] = sqnr_db(reference, out)
    chosen = max(figures, key=lambda name: (figures[name], name == ACTIVATION_CANDIDATES[0]))
    for observer in marked:
        observer.rule = chosen
    choice = ActivationChoice(chosen, figures, len(marked), len(samples), heldout)
    prepared.meta[ACTIVATION_CHOICE_META] = choice
    log.info(choice.summary())
    return choice
