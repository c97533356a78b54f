"""The post-calibration steps a quantizer asks for, as values: which steps run after PTQ
calibration and with which settings. The steps themselves live in ``neutronq.ptq``
(``calibrate_and_quantize`` runs them); the quantizer only carries the request, so that
``NeutronQuantizer(spec, adaround=True, distillation={...})`` refuses a bad setting at
construction, before minutes of calibration.

  * ``PtqSteps``: the choice of activation ranges, AdaRound (and whether sequential), bias
    correction, distillation;
  * ``DistillationSettings``: every setting of ``neutronq.ptq.distill.distill``, with its
    default and its check (one definition: ``distill`` builds one from its keyword arguments);
  * ``AUGMENTATIONS``: the named input augmentations distillation can train with.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Optional, Union

import torch

__all__ = [
    "PtqSteps",
    "DistillationSettings",
    "distillation_settings",
    "flip_images",
    "AUGMENTATIONS",
    "SCHEDULES",
    "DEFAULT_EPOCHS",
    "DEFAULT_LEARNING_RATE",
    "DEFAULT_HOLDOUT",
]

# Measured on EfficientNet-Lite0 per channel (100 calibration crops, 10 per step): 12 epochs at
# 1e-5 took the 500 held-out crops from 25.0 to 25.9 dB, and to 26.0 dB (97.0 %) with
# augment="flip" (6 epochs without flips: 25.85 dB).
DEFAULT_EPOCHS = 12
DEFAULT_LEARNING_RATE = 1e-5
# learning rate over the steps: held, or decayed along a half cosine to 0 at the last step
SCHEDULES = ("constant", "cosine")
# the calibration samples the training steps leave out, to measure their gain on (issue 23: on
# photographs the steps never saw, their gains were a third of those on the calibration photos)
DEFAULT_HOLDOUT = 0.2


def _is_image(x) -> bool:
    return isinstance(x, torch.Tensor) and x.dim() == 4 and x.is_floating_point()


def flip_images(inputs: tuple, generator: torch.Generator) -> tuple:
    """Mirrors each 4-D (N, C, H, W) float input left-right with probability 1/2 (one draw per
    sample): more of the calibration images' own distribution to train on, where crops or
    rescaling would move the activations outside the ranges the observers calibrated."""
    flip = bool(torch.rand((), generator=generator, device=generator.device) < 0.5)
    return tuple(x.flip(-1) if flip and _is_image(x) else x for x in inputs)


def has_images(inputs: tuple) -> bool:
    """Whether ``flip_images`` has anything to mirror in ``inputs``."""
    return any(_is_image(x) for x in inputs)


AUGMENTATIONS: dict[str, Callable] = {"flip": flip_images}


@dataclass(frozen=True)
class DistillationSettings:
    """The settings of distillation after calibration (``neutronq.ptq.distill.distill``).

    epochs: passes over the calibration data; learning_rate: Adam's; batch: samples per step;
    seed: of the sample order and of the augmentation; augment: ``None``, a name in
    ``AUGMENTATIONS`` (``"flip"``) or a function ``(inputs tuple, torch.Generator) -> inputs
    tuple``; features: weight of the loss on the intermediate activations (0: outputs only);
    schedule: ``"constant"`` or ``"cosine"`` (decay to 0 at the end); batched: run the samples of
    a step as one batch where the graph allows it (the same loss, each sample weighed as alone;
    faster), False: one by one (less memory).
    """

    epochs: int = DEFAULT_EPOCHS
    learning_rate: float = DEFAULT_LEARNING_RATE
    batch: int = 10
    seed: int = 0
    augment: Union[None, str, Callable] = None
    features: float = 0.0
    schedule: str = "constant"
    batched: bool = True

    def __post_init__(self):
        if self.epochs < 1 or self.learning_rate <= 0 or self.batch < 1:
            raise ValueError(f"distill needs epochs >= 1, learning_rate > 0 and batch >= 1 (got {self.epochs}, "
                             f"{self.learning_rate}, {self.batch}).")
        features = self.features
        if not isinstance(features, (int, float)) or isinstance(features, bool) or not features >= 0:
            raise ValueError(f"distill: features is the weight of the intermediate-activation loss, a number "
                             f">= 0 (0: outputs only; 1 weighs both alike); got {features!r}.")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"distill: unknown schedule {self.schedule!r}; use one of {list(SCHEDULES)}.")
        augment = self.augment
        if not (augment is None or callable(augment) or augment in AUGMENTATIONS):
            raise ValueError(f"distill: unknown augment {augment!r}; use None, one of {sorted(AUGMENTATIONS)}, "
                             "or a function (inputs tuple, torch.Generator) -> inputs tuple.")

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, settings: dict) -> "DistillationSettings":
        """Settings from a dict; unknown keys are refused with the list of known ones."""
        unknown = sorted(set(settings) - set(cls.names()))
        if unknown:
            raise ValueError(f"distillation: unknown settings {unknown}; the settings are {cls.names()} "
                             "(see neutronq.quantizer.steps.DistillationSettings).")
        return cls(**settings)

    def augmentation(self) -> Optional[Callable]:
        """The augmentation function (None: none)."""
        if self.augment is None or callable(self.augment):
            return self.augment
        return AUGMENTATIONS[self.augment]


def distillation_settings(distillation) -> Optional[dict]:
    """``distillation=`` (True, False / None, or a dict of settings) as the dict of settings the
    user chose, checked (None: off; ``{}``: on, with the defaults)."""
    if distillation is None or distillation is False:
        return None
    if distillation is True:
        return {}
    if isinstance(distillation, dict):
        DistillationSettings.from_dict(distillation)
        return dict(distillation)
    raise TypeError(f"distillation must be True, False or a dict of distill settings; got {type(distillation).__name__}.")


@dataclass(frozen=True)
class PtqSteps:
    """What runs after PTQ calibration, in this order: the choice of activation ranges
    (``activation_choice``: some activations calibrated with ``activation_observer="auto"``),
    AdaRound, bias correction, distillation.

    ``adaround_sequential``: AdaRound each layer on the int8 model's input so far (True) or on
    the float model's (False). ``distillation``: the settings the user chose (a dict, ``{}`` for
    the defaults), or None for no distillation. ``holdout``: the share of the calibration samples
    the steps do not train on; each step's gain is measured there, a step that does not gain there
    is undone, and distillation keeps its best epoch there (0: no held-out part, every step kept)."""

    adaround: bool = False
    adaround_sequential: bool = True
    activation_choice: bool = False
    bias_correction: bool = False
    distillation: Optional[dict] = None
    holdout: float = DEFAULT_HOLDOUT

    def __post_init__(self):
        if not 0.0 <= self.holdout < 1.0:
            raise ValueError(f"holdout is the share of the calibration samples kept out of the training steps, "
                             f"in [0, 1); got {self.holdout!r}.")

    @property
    def any(self) -> bool:
        return self.activation_choice or self.adaround or self.bias_correction or self.distillation is not None

    def distillation_settings(self) -> Optional[DistillationSettings]:
        return None if self.distillation is None else DistillationSettings.from_dict(self.distillation)
