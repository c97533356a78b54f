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
output SQNR against the float model is the challenger. It replaces the histogram ranges only when
its gain is clear sample by sample: the mean over the samples of its per-sample gain (the ratio of
the histogram's output error to its own, in dB) must be at least ``SIGNIFICANCE`` standard errors
above zero. Otherwise, as when two rules are near-equals on a few held-out samples and the
higher figure is noise, the histogram ranges stay. It is one choice of three for the whole
model, not a range per activation fitted to the samples, so it has little to overfit;
``prepare_and_calibrate`` makes it on the held-out share of the calibration samples (all of them
with ``holdout=0``), before AdaRound and the other steps, which then see the chosen ranges.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch.fx import GraphModule

from neutronq.metrics import sqnr_db
from neutronq.ptq.error_budget import outputs_with_rounding
from neutronq.quantizer.observers import HeldOutChoiceObserver
from neutronq.quantizer.specs import ACTIVATION_CANDIDATES

__all__ = ["ActivationChoice", "ACTIVATION_CHOICE_META", "SIGNIFICANCE", "choose_activation_ranges", "paired_gain_db",
           "pick_candidate"]

log = logging.getLogger(__name__)
ACTIVATION_CHOICE_META = "neutronq_activation_choice"
# a challenger replaces the histogram ranges when its mean per-sample gain is at least this many
# standard errors above zero (roughly a 2-3 % one-sided chance of switching on noise alone)
SIGNIFICANCE = 2.0


@dataclass(frozen=True)
class ActivationChoice:
    """The candidate kept, and each candidate's activations-only SQNR (dB) on the samples."""

    chosen: str
    sqnr_db: dict
    activations: int  # how many activation observers it set
    samples: int
    heldout: bool  # measured on held-out samples (False: on the samples calibration saw)
    # the best other candidate's mean per-sample gain over the histogram ranges and its standard
    # error (dB); None when the histogram ranges measured best
    challenger: Optional[str] = None
    gain_db: Optional[float] = None
    gain_se_db: Optional[float] = None

    def figures(self) -> str:
        """How each candidate measured, e.g. for the report's observers row."""
        where = "held-out" if self.heldout else "calibration"
        figures = ", ".join(f"{name} {db:.2f} dB" for name, db in self.sqnr_db.items())
        evidence = ""
        if self.challenger is not None:
            verdict = f"{SIGNIFICANCE:g} standard errors or more: taken" if self.chosen == self.challenger else \
                f"under {SIGNIFICANCE:g} standard errors: the {ACTIVATION_CANDIDATES[0]} ranges stay"
            spread = "(one sample)" if self.gain_se_db is None else f"\u00b1 {self.gain_se_db:.2f}"
            evidence = (f"; {self.challenger} {self.gain_db:+.2f} {spread} dB a sample over "
                        f"{ACTIVATION_CANDIDATES[0]}, {verdict}")
        return f"int8 activations, float weights, on {self.samples} {where} samples: {figures}{evidence}"

    def summary(self) -> str:
        return f"activation ranges: {self.chosen} for {self.activations} activations ({self.figures()})"

    def as_dict(self) -> dict:
        return {"chosen": self.chosen, "sqnr_db": dict(self.sqnr_db), "activations": self.activations,
                "samples": self.samples, "heldout": self.heldout, "challenger": self.challenger,
                "gain_db": self.gain_db, "gain_se_db": self.gain_se_db}


def paired_gain_db(reference: torch.Tensor, default: torch.Tensor, challenger: torch.Tensor) -> tuple[float, float]:
    """The mean over the rows (samples) of ``10 log10(default's squared error / challenger's)``
    against ``reference``, and its standard error (inf with fewer than two rows). Rows where both
    are exact gain 0 dB."""
    tiny = torch.finfo(torch.float64).tiny
    reference = reference.double().reshape(len(reference), -1)
    errors = [(reference - out.double().reshape(len(out), -1)).pow(2).mean(1).clamp_min(tiny)
              for out in (default, challenger)]
    gains = 10.0 * torch.log10(errors[0] / errors[1])
    if len(gains) < 2:
        return float(gains.mean()), math.inf
    return float(gains.mean()), float(gains.std() / math.sqrt(len(gains)))


def pick_candidate(reference: torch.Tensor, outputs: dict) -> dict:
    """Which of ``outputs`` (candidate name -> the model's outputs, one row a sample; the first of
    ``ACTIVATION_CANDIDATES`` is the default) to keep, judged against ``reference``: the fields
    ``chosen``, ``sqnr_db``, ``challenger``, ``gain_db`` and ``gain_se_db`` of ``ActivationChoice``."""
    default = ACTIVATION_CANDIDATES[0]
    figures = {name: sqnr_db(reference, out) for name, out in outputs.items()}
    best = max(figures, key=lambda name: (figures[name], name == default))
    if best == default:
        return {"chosen": default, "sqnr_db": figures, "challenger": None, "gain_db": None, "gain_se_db": None}
    gain, se = paired_gain_db(reference, outputs[default], outputs[best])
    chosen = best if gain > 0 and gain >= SIGNIFICANCE * se else default
    return {"chosen": chosen, "sqnr_db": figures, "challenger": best, "gain_db": gain,
            "gain_se_db": se if math.isfinite(se) else None}  # one sample: no spread to judge by


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
    (``rule``) that ``pick_candidate`` keeps on ``samples`` (input tuples on the model's device),
    in place.
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
    outputs = {}
    for name in ACTIVATION_CANDIDATES:
        for observer in marked:
            observer.rule = name
        outputs[name] = outputs_with_rounding(prepared, samples, round_weights=False, round_activations=True,
                                              float_params=True)
    verdict = pick_candidate(reference, outputs)
    chosen = verdict["chosen"]
    for observer in marked:
        observer.rule = chosen
    choice = ActivationChoice(activations=len(marked), samples=len(samples), heldout=heldout, **verdict)
    prepared.meta[ACTIVATION_CHOICE_META] = choice
    log.info(choice.summary())
    return choice
