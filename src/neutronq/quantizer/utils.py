"""``calibrate_and_quantize``: prepare, calibrate (or train) and convert in one call;
``prepare_and_calibrate``: the same up to ``convert_pt2e``, for a look at the calibrated model
(``neutronq.quantizer.error_budget``) before converting it."""

from __future__ import annotations

from typing import Callable, Iterable, Optional, Union

import torch
from torch.export import ExportedProgram
from torch.fx import GraphModule
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

from neutronq._progress import progress

__all__ = ["calibrate_and_quantize", "prepare_and_calibrate", "as_input_tuple", "check_finite_inputs"]


def as_input_tuple(sample) -> tuple:
    """A calibration sample as a tuple of model inputs; a bare tensor is a 1-tuple."""
    if isinstance(sample, torch.Tensor):
        return (sample,)
    if isinstance(sample, (tuple, list)):
        return tuple(sample)
    raise TypeError(
        "Each calibration input must be a tensor or a tuple of tensors (the model's positional "
        f"inputs); got {type(sample).__name__}."
    )


def check_finite_inputs(index: int, inputs: tuple) -> None:
    for pos, t in enumerate(inputs):
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not torch.isfinite(t).all():
            bad = "NaN" if torch.isnan(t).any() else "inf"
            raise ValueError(
                f"Calibration batch {index} (input {pos}) contains {bad} values. Observers would "
                "set the quantization range from them; clean or drop that batch and call again."
            )


def _as_graph_module(model) -> GraphModule:
    if isinstance(model, ExportedProgram):
        return model.module()
    if isinstance(model, GraphModule):
        return model
    raise TypeError(
        "calibrate_and_quantize needs the exported model: an ExportedProgram from "
        "torch.export.export(model, sample_inputs) or its .module(); got "
        f"{type(model).__name__}. Export it first."
    )


def calibrate_and_quantize(
    model: Union[ExportedProgram, GraphModule],
    calibration_inputs: Optional[Iterable],
    quantizer,
    is_qat: bool = False,
    train_fn: Optional[Callable[[GraphModule], None]] = None,
) -> GraphModule:
    """Quantize an exported model with ``quantizer`` and return the converted ``GraphModule``.

    PTQ (``is_qat=False``): ``calibration_inputs`` is an iterable of input tuples (a bare tensor
    counts as a 1-tuple); each is run through the prepared model. QAT (``is_qat=True``):
    ``train_fn(prepared_model)`` trains the prepared model in train mode and returns nothing;
    ``calibration_inputs`` may then be ``None``.
    """
    graph_module = _as_graph_module(model)
    if is_qat:
        from neutronq.quantizer.qat import quantize_with_training

        return quantize_with_training(graph_module, calibration_inputs, quantizer, train_fn)
    return convert_pt2e(prepare_and_calibrate(graph_module, calibration_inputs, quantizer))


def prepare_and_calibrate(model: Union[ExportedProgram, GraphModule], calibration_inputs: Iterable,
                          quantizer) -> GraphModule:
    """PTQ up to ``convert_pt2e``: prepare, calibrate, then the quantizer's AdaRound and bias
    correction. Returns the calibrated ``prepare_pt2e`` model; ``convert_pt2e`` of it is what
    ``calibrate_and_quantize`` returns (convert it once: ``convert_pt2e`` changes it in place)."""
    graph_module = _as_graph_module(model)
    if getattr(quantizer, "is_qat", False):
        raise ValueError(
            "This quantizer was made with is_qat=True but post-training quantization was asked for "
            "(calibrate_and_quantize with is_qat=False, or prepare_and_calibrate). Pass is_qat=True "
            "and a train_fn to calibrate_and_quantize, or use NeutronQuantizer(spec, is_qat=False)."
        )
    if calibration_inputs is None:
        raise ValueError("calibration_inputs is None: PTQ needs representative inputs to calibrate.")

    prepared = prepare_pt2e(graph_module, quantizer)
    count = 0
    bias_correction = getattr(quantizer, "bias_correction", False)
    adaround = getattr(quantizer, "adaround", False)
    distillation = getattr(quantizer, "distillation", None)  # distill's settings, or None
    kept = []  # the calibration set again, for the steps after calibration (an iterable may be single-pass)
    with torch.no_grad():
        for index, sample in enumerate(progress(calibration_inputs, desc="calibrating", unit="batch")):
            inputs = as_input_tuple(sample)
            check_finite_inputs(index, inputs)
            prepared(*inputs)
            count += 1
            if bias_correction or adaround or distillation is not None:
                kept.append(inputs)
    if count == 0:
        raise ValueError(
            "calibration_inputs is empty: PTQ needs at least one representative input batch "
            "to set the activation ranges."
        )
    if adaround:
        from neutronq.quantizer.adaround import adaround_weights

        adaround_weights(prepared, kept, sequential=getattr(quantizer, "adaround_sequential", True))
    if bias_correction:
        from neutronq.quantizer.accuracy import correct_biases

        correct_biases(prepared, kept)
    if distillation is not None:
        from neutronq.quantizer.distill import distill

        distill(prepared, kept, **distillation)
    return prepared
