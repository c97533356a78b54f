"""Distillation after calibration (``NeutronQuantizer(..., distillation=True)``).

AdaRound fits each layer alone, and the error budget shows where that stops: per channel on
EfficientNet-Lite0 the int8 activations cost more than the weights, and no rounding of a layer's
own weights sees what the activations' rounding does further down. Here the calibrated model is
trained as a whole instead: the weights and biases of every conv / linear are moved by gradient
descent so that the int8 model (every weight and activation rounded with its observer's fixed
parameters; straight-through gradients) gives its float self's outputs on the calibration inputs.
The quantization parameters do not change, so ``convert_pt2e`` and the lowering see the same
graph, with new weight and bias values.

The float reference is the prepared model itself with the float weights and biases kept in its
``meta`` (from before AdaRound and bias correction); this step keeps them there too, so the error
budget and bias correction still measure against the float model.
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional, Union

import torch
from torch.fx import GraphModule

from neutronq._progress import progress
from neutronq.quantizer.accuracy import FLOAT_BIASES_META, ObserverRounding, _replace_tensor, flat_outputs

__all__ = ["distill", "check_settings", "flip_images", "DEFAULT_EPOCHS", "DEFAULT_LEARNING_RATE", "AUGMENTATIONS",
           "SCHEDULES"]

# Measured on EfficientNet-Lite0 per channel (100 calibration crops, 10 per step): 12 epochs at
# 1e-5 took the 500 held-out crops from 25.0 to 25.9 dB, and to 26.0 dB (97.0 %) with
# augment="flip" (6 epochs without flips: 25.85 dB).
DEFAULT_EPOCHS = 12
DEFAULT_LEARNING_RATE = 1e-5


def flip_images(inputs: tuple, generator: torch.Generator) -> tuple:
    """Mirrors each 4-D (N, C, H, W) float input left-right with probability 1/2 (one draw per
    sample): more of the calibration images' own distribution to train on, where crops or
    rescaling would move the activations outside the ranges the observers calibrated."""
    flip = bool(torch.rand((), generator=generator) < 0.5)
    return tuple(x.flip(-1) if flip and _is_image(x) else x for x in inputs)


def _is_image(x) -> bool:
    return isinstance(x, torch.Tensor) and x.dim() == 4 and x.is_floating_point()


AUGMENTATIONS = {"flip": flip_images}
# learning rate over the steps: held, or decayed along a half cosine to 0 at the last step
SCHEDULES = ("constant", "cosine")


def check_settings(epochs: int = DEFAULT_EPOCHS, learning_rate: float = DEFAULT_LEARNING_RATE,
                   batch: int = 10, seed: int = 0, augment=None, features: float = 0.0,
                   schedule: str = "constant") -> None:
    """Refuses bad ``distill`` settings; ``NeutronQuantizer`` calls it too, so a mistake shows
    before calibration rather than after it."""
    if epochs < 1 or learning_rate <= 0 or batch < 1:
        raise ValueError(f"distill needs epochs >= 1, learning_rate > 0 and batch >= 1 (got {epochs}, "
                         f"{learning_rate}, {batch}).")
    if not isinstance(features, (int, float)) or isinstance(features, bool) or not features >= 0:
        raise ValueError(f"distill: features is the weight of the intermediate-activation loss, a number "
                         f">= 0 (0: outputs only; 1 weighs both alike); got {features!r}.")
    if schedule not in SCHEDULES:
        raise ValueError(f"distill: unknown schedule {schedule!r}; use one of {list(SCHEDULES)}.")
    if not (augment is None or callable(augment) or augment in AUGMENTATIONS):
        raise ValueError(f"distill: unknown augment {augment!r}; use None, one of {sorted(AUGMENTATIONS)}, "
                         "or a function (inputs tuple, torch.Generator) -> inputs tuple.")


def _augmentation(augment, samples: list) -> Optional[Callable]:
    if augment is None or callable(augment):
        return augment
    if augment == "flip" and not any(_is_image(x) for x in samples[0]):
        raise ValueError("distill: augment='flip' mirrors 4-D (N, C, H, W) float inputs, and the "
                         "calibration inputs have none; drop augment for this model.")
    return AUGMENTATIONS[augment]


class _Recording(ObserverRounding):
    """Keeps, when ``features`` is a list, the value each activation observer passes on (rounded
    or float, as this run does): the model's intermediate activations, in graph order."""

    features: Optional[list] = None

    def call_module(self, target, args, kwargs):
        out = super().call_module(target, args, kwargs)
        if self.features is not None and target not in self.parameter_observers and \
                hasattr(self.module.get_submodule(target), "calculate_qparams"):
            self.features.append(out)
        return out

    def run_recording(self, inputs: tuple, record: bool):
        self.features = [] if record else None
        try:
            return self.run(*inputs), self.features
        finally:
            self.features = None


class _Student(_Recording):
    """The int8 model with straight-through roundings, its conv / linear weights and biases
    replaced by trainable copies."""

    def __init__(self, gm: GraphModule):
        super().__init__(gm, round_weights=True, round_activations=True, straight_through=True)
        self.trained, self.dtypes, self.kinds = {}, {}, {}
        for node in gm.graph.nodes:
            if node.op == "call_module" and node.target in self.parameter_observers:
                target = node.args[0].target
                value = super().fetch_attr(target).detach()
                self.trained[target] = torch.nn.Parameter(value.float().clone())
                self.dtypes[target] = value.dtype
                self.kinds[target] = self.parameter_observers[node.target]  # "weight" or "bias"

    def fetch_attr(self, target: str):
        trained = self.trained.get(target)
        return super().fetch_attr(target) if trained is None else trained


def _feature_loss(student: list, teacher: list) -> torch.Tensor:
    """Mean over the intermediate activations of each one's squared int8 error over its float
    power: every layer counts alike, whatever its scale."""
    if len(student) != len(teacher):
        raise RuntimeError(f"distill: the int8 run recorded {len(student)} activations and the float "
                           f"run {len(teacher)}; the graph must not branch on values.")
    terms = [(s - t).pow(2).mean() / t.pow(2).mean().clamp_min(1e-12) for s, t in zip(student, teacher)]
    return torch.stack(terms).mean()


def distill(prepared: GraphModule, calibration_inputs: Iterable, *, epochs: int = DEFAULT_EPOCHS,
            learning_rate: float = DEFAULT_LEARNING_RATE, batch: int = 10, seed: int = 0,
            augment: Union[None, str, Callable] = None, features: float = 0.0,
            schedule: str = "constant") -> GraphModule:
    """Trains the weights and biases of the calibrated ``prepare_pt2e`` model ``prepared`` so that
    its int8 outputs match its float outputs on ``calibration_inputs`` (input tuples or tensors),
    in place; returns it. ``batch`` samples per Adam step, ``epochs`` passes over the data.
    ``augment``: ``"flip"`` (``flip_images``) or a function ``(inputs, generator) -> inputs``
    applied to each sample at each step; the float targets are then computed on the new inputs.
    ``features``: weight of a second loss on the intermediate activations, each one's int8 error
    relative to its float power, averaged over the activations (0: the outputs alone).
    ``schedule``: ``"constant"`` learning rate, or ``"cosine"`` decay from it to 0 at the end."""
    from neutronq.quantizer.adaround import FLOAT_WEIGHTS_META
    from neutronq.quantizer.utils import as_input_tuple

    check_settings(epochs, learning_rate, batch, seed, augment, features, schedule)
    samples = [as_input_tuple(x) for x in calibration_inputs]
    if not samples:
        raise ValueError("distill needs calibration inputs to train on (got none).")
    student = _Student(prepared)
    if not student.trained:
        raise ValueError("distill found no quantized weights to train: call it on the calibrated "
                         "prepare_pt2e model (before convert_pt2e), and quantize at least one conv / linear.")
    augmentation = _augmentation(augment, samples)
    teacher = _Recording(prepared, float_params=True)
    record = features > 0

    def float_outputs(inputs):
        with torch.no_grad():
            out, inner = teacher.run_recording(inputs, record)
            return flat_outputs(out, len(inputs[0])), inner

    # without augmentation the float targets are computed once (intermediate ones too: ~40 MB a
    # sample for an EfficientNet at 224 px); with it, only for the power, so nothing more is held
    fixed = [float_outputs(x) for x in samples]
    if augmentation is not None:
        fixed = [(out, None) for out, _ in fixed]
    power = torch.stack([t.pow(2).mean() for t, _ in fixed]).mean().clamp_min(1e-12)

    # the float values stay available to the error budget and to bias correction
    meta = prepared.meta
    for target, value in student.trained.items():
        kind = FLOAT_BIASES_META if student.kinds[target] == "bias" else FLOAT_WEIGHTS_META
        meta.setdefault(kind, {}).setdefault(target, value.detach().clone())

    optimizer = torch.optim.Adam(student.trained.values(), lr=learning_rate)
    steps = epochs * -(-len(samples) // batch)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps) if schedule == "cosine" else None
    generator = torch.Generator().manual_seed(seed)
    for _ in progress(range(epochs), desc="distillation", unit="epoch"):
        order = torch.randperm(len(samples), generator=generator).tolist()
        for start in range(0, len(order), batch):
            chunk = order[start : start + batch]
            optimizer.zero_grad()
            for index in chunk:
                if augmentation is None:
                    inputs, (expected, expected_inner) = samples[index], fixed[index]
                else:
                    inputs = augmentation(samples[index], generator)
                    expected, expected_inner = float_outputs(inputs)
                out, inner = student.run_recording(inputs, record)
                loss = (flat_outputs(out, len(inputs[0])) - expected).pow(2).mean() / power
                if record:
                    loss = loss + features * _feature_loss(inner, expected_inner)
                (loss / len(chunk)).backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
    with torch.no_grad():
        for target, value in student.trained.items():
            _replace_tensor(prepared, target, value.detach().to(student.dtypes[target]))
    return prepared

