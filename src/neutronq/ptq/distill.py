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

from typing import Iterable, Optional

import torch
from torch.fx import GraphModule

from neutronq._progress import progress
from neutronq.devices import SAMPLING_DEVICE, model_device
from neutronq.fx import set_attr_value
from neutronq.ptq.observed import FLOAT_BIASES_META, FLOAT_WEIGHTS_META, ObserverRounding, flat_outputs
from neutronq.ptq.samples import as_input_tuple, batch_free, stack_samples
from neutronq.quantizer.steps import DistillationSettings, has_images

__all__ = ["distill", "ActivationRecorder", "feature_loss"]


class ActivationRecorder(ObserverRounding):
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


class _Student(ActivationRecorder):
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


def feature_loss(student: list, teacher: list, groups: int = 1) -> torch.Tensor:
    """Mean over the intermediate activations of each one's squared int8 error over its float
    power: every layer counts alike, whatever its scale. ``groups``: the batch holds that many
    samples of equal size, each weighed by its own power (as if run one by one); the mean over
    them is returned."""
    if len(student) != len(teacher):
        raise RuntimeError(f"distill: the int8 run recorded {len(student)} activations and the float "
                           f"run {len(teacher)}; the graph must not branch on values.")
    terms = []
    for s, t in zip(student, teacher):
        error = (s - t).pow(2).reshape(groups, -1).mean(1)
        terms.append(error / t.pow(2).reshape(groups, -1).mean(1).clamp_min(1e-12))
    return torch.stack(terms).mean()


def distill(prepared: GraphModule, calibration_inputs: Iterable, validation: Optional[Iterable] = None,
            **settings) -> GraphModule:
    """Trains the weights and biases of the calibrated ``prepare_pt2e`` model ``prepared`` so that
    its int8 outputs match its float outputs on ``calibration_inputs`` (input tuples or tensors),
    in place; returns it. ``validation``: samples it does not train on; after every epoch the
    output loss is measured on them, and the weights of the best epoch (or the starting ones, if
    no epoch improved on them) are kept. The keyword settings are those of
    ``neutronq.quantizer.steps.DistillationSettings`` (checked before any work): ``batch``
    samples per Adam step, ``epochs`` passes over the data, ``learning_rate``, ``seed``;
    ``augment``: ``"flip"`` (``flip_images``) or a function ``(inputs, generator) -> inputs``
    applied to each sample at each step, the float targets then computed on the new inputs;
    ``features``: weight of a second loss on the intermediate activations, each one's int8 error
    relative to its float power, averaged over the activations (0: the outputs alone);
    ``schedule``: ``"constant"`` learning rate, or ``"cosine"`` decay from it to 0 at the end."""
    config = DistillationSettings.from_dict(settings)
    device = model_device(prepared)
    samples = [as_input_tuple(x, device) for x in calibration_inputs]
    if not samples:
        raise ValueError("distill needs calibration inputs to train on (got none).")
    student = _Student(prepared)
    if not student.trained:
        raise ValueError("distill found no quantized weights to train: call it on the calibrated "
                         "prepare_pt2e model (before convert_pt2e), and quantize at least one conv / linear.")
    augmentation = config.augmentation()
    if config.augment == "flip" and not has_images(samples[0]):
        raise ValueError("distill: augment='flip' mirrors 4-D (N, C, H, W) float inputs, and the "
                         "calibration inputs have none; drop augment for this model.")
    teacher = ActivationRecorder(prepared, float_params=True, qparams=student.qparams)
    record = config.features > 0
    # several samples run as one batch where the graph allows it (2-3x faster than one by one,
    # the same loss: each sample weighed as alone); else one at a time
    together = config.batched and batch_free(prepared, samples)

    def float_outputs(inputs):
        """The float model's flat outputs and intermediate activations of a batch."""
        with torch.no_grad():
            out, inner = teacher.run_recording(inputs, record)
            return flat_outputs(out, len(inputs[0])), inner

    def groups_of(indices: list) -> list:
        return [indices] if together else [[i] for i in indices]

    # without augmentation the float targets are computed once (intermediate ones too: ~40 MB a
    # sample for an EfficientNet at 224 px); with it, only for the power, so nothing more is held
    fixed: dict = {}
    for start in range(0, len(samples), config.batch):
        for group in groups_of(list(range(start, min(start + config.batch, len(samples))))):
            out, inner = float_outputs(stack_samples([samples[i] for i in group]))
            for k, i in enumerate(group):
                rows = slice(k * len(samples[i][0]), (k + 1) * len(samples[i][0]))
                fixed[i] = (out[rows], None if augmentation is not None or inner is None else [t[rows] for t in inner])
    power = torch.stack([fixed[i][0].pow(2).mean() for i in range(len(samples))]).mean().clamp_min(1e-12)

    held = [as_input_tuple(x) for x in validation] if validation is not None else []

    size = config.batch if held and batch_free(prepared, held) and together else 1
    held_batches = [stack_samples(held[i : i + size]) for i in range(0, len(held), size)]
    with torch.no_grad():  # the float outputs do not change: computed once, not at every epoch
        held_expected = [flat_outputs(teacher.run_recording(inputs, False)[0], len(inputs[0]))
                         for inputs in held_batches]

    def validation_loss() -> float:
        """The int8 model's squared output error on the held-out samples, summed."""
        total = 0.0
        with torch.no_grad():
            for inputs, expected in zip(held_batches, held_expected):
                out, _ = student.run_recording(inputs, False)
                total += float((flat_outputs(out, len(inputs[0])) - expected).pow(2).sum())
        return total

    best = None
    if held:
        best = (validation_loss(), {t: v.detach().clone() for t, v in student.trained.items()})

    # the float values stay available to the error budget and to bias correction
    meta = prepared.meta
    for target, value in student.trained.items():
        kind = FLOAT_BIASES_META if student.kinds[target] == "bias" else FLOAT_WEIGHTS_META
        meta.setdefault(kind, {}).setdefault(target, value.detach().clone())

    optimizer = torch.optim.Adam(student.trained.values(), lr=config.learning_rate)
    steps = config.epochs * -(-len(samples) // config.batch)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps) if config.schedule == "cosine" else None
    generator = torch.Generator(SAMPLING_DEVICE).manual_seed(config.seed)
    for _ in progress(range(config.epochs), desc="distillation", unit="epoch"):
        order = torch.randperm(len(samples), generator=generator, device=SAMPLING_DEVICE).tolist()
        for start in range(0, len(order), config.batch):
            chunk = order[start : start + config.batch]
            optimizer.zero_grad()
            for group in groups_of(chunk):
                if augmentation is None:
                    inputs = stack_samples([samples[i] for i in group])
                    expected = torch.cat([fixed[i][0] for i in group])
                    expected_inner = None if not record else \
                        [torch.cat(parts) for parts in zip(*[fixed[i][1] for i in group])]
                else:  # one draw per sample, in the order of the chunk
                    inputs = stack_samples([augmentation(samples[i], generator) for i in group])
                    expected, expected_inner = float_outputs(inputs)
                out, inner = student.run_recording(inputs, record)
                loss = (flat_outputs(out, len(inputs[0])) - expected).pow(2).mean() / power
                if record:
                    loss = loss + config.features * feature_loss(inner, expected_inner, groups=len(group))
                (loss * len(group) / len(chunk)).backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
        if held:
            loss = validation_loss()
            if loss < best[0]:
                best = (loss, {t: v.detach().clone() for t, v in student.trained.items()})
    if held:  # the best epoch on the held-out samples (or where it started)
        with torch.no_grad():
            for target, value in best[1].items():
                student.trained[target].copy_(value)
    with torch.no_grad():
        for target, value in student.trained.items():
            set_attr_value(prepared, target, value.detach().to(student.dtypes[target]), requires_grad=False)
    return prepared

