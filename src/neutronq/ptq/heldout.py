"""The held-out guard of the training steps after calibration (AdaRound, bias correction,
distillation).

Those steps fit the weights to the calibration samples, and on samples they never saw part of the
gain disappears (on EfficientNet-Lite0, measured on photographs of other scenes: distillation
kept 0.3 of its 0.95 dB, the per-tensor preset lost 2.6 dB against its figure on the calibration
photos). So ``prepare_and_calibrate`` keeps a share of the calibration samples out of the steps
(``NeutronQuantizer(..., holdout=0.2)``), measures each step's gain there (the int8 model's output
SQNR against the float model, before and after the step) and undoes a step that does not gain
there, with a ``StepNotKeptWarning``. Distillation also keeps its best epoch on the held-out
part. The gains are kept in ``prepared.meta["neutronq_step_gains"]`` (a list of ``StepGain``),
which the CLI's report shows.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import torch
from torch.fx import GraphModule

from neutronq.fx import get_attr_value, set_attr_value
from neutronq.metrics import sqnr_db
from neutronq.ptq.observed import ObserverRounding, flat_outputs, parameter_observers
from neutronq.ptq.samples import batch_free, stack_samples

__all__ = ["StepGain", "StepNotKeptWarning", "STEP_GAINS_META", "split_holdout", "StepGuard"]

log = logging.getLogger(__name__)
STEP_GAINS_META = "neutronq_step_gains"
_EVAL_BATCH = 8
_CALIBRATION_EVAL_SAMPLES = 32  # the training part's SQNR is measured on at most this many


class StepNotKeptWarning(UserWarning):
    """A training step that did not raise the held-out SQNR was undone."""


@dataclass(frozen=True)
class StepGain:
    """One step's effect on the int8 model's output SQNR against the float model (dB)."""

    step: str
    calibration_before_db: float
    calibration_after_db: float
    heldout_before_db: Optional[float]  # None: no held-out part
    heldout_after_db: Optional[float]
    kept: bool

    @property
    def calibration_gain_db(self) -> float:
        return self.calibration_after_db - self.calibration_before_db

    @property
    def heldout_gain_db(self) -> Optional[float]:
        if self.heldout_before_db is None or self.heldout_after_db is None:
            return None
        return self.heldout_after_db - self.heldout_before_db

    def as_dict(self) -> dict:
        return {**asdict(self), "calibration_gain_db": self.calibration_gain_db,
                "heldout_gain_db": self.heldout_gain_db}


def split_holdout(samples: list, share: float) -> tuple[list, list]:
    """(training part, held-out part): every sample whose index crosses a multiple of
    1/``share`` is held out (spread over the set, deterministic); no held-out part when
    ``share`` is 0 or the set is too small to leave two samples on each side."""
    held = [i for i in range(len(samples)) if int((i + 1) * share) > int(i * share)]
    if share <= 0 or len(held) < 2 or len(samples) - len(held) < 2:
        return list(samples), []
    chosen = set(held)
    return [s for i, s in enumerate(samples) if i not in chosen], [samples[i] for i in held]


def _outputs(interpreter: ObserverRounding, samples: list, together: bool) -> torch.Tensor:
    size = _EVAL_BATCH if together else 1
    with torch.no_grad():
        return torch.cat([flat_outputs(interpreter.run(*stack_samples(samples[i : i + size])),
                                       sum(len(x[0]) for x in samples[i : i + size]))
                          for i in range(0, len(samples), size)])


class StepGuard:
    """Runs the training steps of one calibrated model under the held-out guard."""

    def __init__(self, prepared: GraphModule, train: list, heldout: list):
        self.prepared, self.train, self.heldout = prepared, train, heldout
        self.measured_train = train[:_CALIBRATION_EVAL_SAMPLES]
        self.qparams: dict = {}
        self.together = batch_free(prepared, train + heldout)
        reference = ObserverRounding(prepared, float_params=True, qparams=self.qparams)
        self.reference = {"train": _outputs(reference, self.measured_train, self.together),
                          "heldout": _outputs(reference, heldout, self.together) if heldout else None}
        self.current = self._measure()
        self.gains: list[StepGain] = prepared.meta.setdefault(STEP_GAINS_META, [])

    def _measure(self) -> dict:
        int8 = ObserverRounding(self.prepared, round_weights=True, round_activations=True, qparams=self.qparams)
        out = {"train": sqnr_db(self.reference["train"], _outputs(int8, self.measured_train, self.together))}
        out["heldout"] = None if not self.heldout else \
            sqnr_db(self.reference["heldout"], _outputs(int8, self.heldout, self.together))
        return out

    def _snapshot(self) -> dict:
        observers = parameter_observers(self.prepared)
        targets = {n.args[0].target for n in self.prepared.graph.nodes
                   if n.op == "call_module" and n.target in observers}
        return {t: get_attr_value(self.prepared, t).detach().clone() for t in targets}

    def run(self, name: str, step: Callable[[list], None]) -> StepGain:
        """``step(training samples)`` changes the model in place; kept if the held-out SQNR rose."""
        before = self.current
        saved = self._snapshot() if self.heldout else None
        step(self.train)
        after = self._measure()
        kept = after["heldout"] is None or after["heldout"] > before["heldout"]
        gain = StepGain(name, before["train"], after["train"], before["heldout"], after["heldout"], kept)
        if kept:
            self.current = after
        else:
            for target, value in saved.items():
                set_attr_value(self.prepared, target, value, requires_grad=False)
            message = (f"{name} did not raise the int8 model's SQNR on the {len(self.heldout)} held-out calibration "
                       f"samples ({before['heldout']:.2f} -> {after['heldout']:.2f} dB; on the samples it trained on "
                       f"{before['train']:.2f} -> {after['train']:.2f} dB): undone. More or more varied calibration "
                       "data may let it generalise; holdout=0 keeps every step.")
            log.warning(message)
            warnings.warn(message, StepNotKeptWarning, stacklevel=3)
        self.gains.append(gain)
        return gain
