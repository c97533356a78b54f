"""The quantization flow in one call, as the seeds name it.

``calibrate_and_quantize``: prepare, calibrate (PTQ) or train (QAT), run the quantizer's
post-calibration steps, convert; ``prepare_and_calibrate``: the same up to ``convert_pt2e``, for a
look at the calibrated model (``neutronq.ptq.error_budget``) before converting it.

PTQ, in order: ``prepare_pt2e`` (the quantizer's graph passes and annotation), calibration over
the inputs, then the steps the quantizer carries (``quantizer.steps``): the choice of activation
ranges (``activation_observer="auto"``, made on a held-out share of the calibration samples), then
AdaRound, bias correction and distillation, each trained on the calibration samples but that share
and kept only if it gains there (``neutronq.ptq.heldout``). QAT: ``prepare_qat_pt2e``,
``train_fn`` in train mode, optional calibration in eval mode, ``convert_pt2e`` and the passes
after it (``aten_passes.pass_manager.passes_after_convert``).

Every step runs on the device of the model it is given (``neutronq.devices``): the prepared model
stays there, and inputs on another device are moved to it. Across processes (torchrun),
``neutronq.ptq.distributed`` splits the calibration data and keeps QAT ranks identical.
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional, Union

import torch
from torch.export import ExportedProgram
from torch.fx import GraphModule
from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e, prepare_qat_pt2e

from neutronq._progress import progress
from neutronq.aten_passes.pass_manager import passes_after_convert
from neutronq.devices import model_device, move_model
from neutronq.ptq.activation_choice import choose_activation_ranges
from neutronq.ptq.adaround import adaround_weights
from neutronq.ptq.bias_correction import correct_biases
from neutronq.ptq.distill import distill
from neutronq.ptq.heldout import StepGuard, split_holdout
from neutronq.ptq.samples import as_input_tuple, check_finite_inputs, check_sample_types, input_specs
from neutronq.quantizer.qat import DISTRIBUTED_SYNC_ATTR
from neutronq.quantizer.ranges import check_ranges, first_overflow
from neutronq.quantizer.steps import PtqSteps

__all__ = ["calibrate_and_quantize", "prepare_and_calibrate", "quantize_with_training", "prepare",
           "calibrate", "run_steps"]


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
        return quantize_with_training(graph_module, calibration_inputs, quantizer, train_fn)
    return convert_pt2e(prepare_and_calibrate(graph_module, calibration_inputs, quantizer))


def prepare_and_calibrate(model: Union[ExportedProgram, GraphModule], calibration_inputs: Iterable,
                          quantizer) -> GraphModule:
    """PTQ up to ``convert_pt2e``: prepare, calibrate, then the quantizer's AdaRound, bias
    correction and distillation. Returns the calibrated ``prepare_pt2e`` model; ``convert_pt2e``
    of it is what ``calibrate_and_quantize`` returns (convert it once: ``convert_pt2e`` changes it
    in place). It stays on the device of ``model`` (a ``GraphModule`` moved there, or the
    ``ExportedProgram``'s CPU); inputs are moved to it."""
    prepared = prepare(model, quantizer, calibration_inputs)
    steps: PtqSteps = getattr(quantizer, "steps", None) or PtqSteps()
    kept = calibrate(prepared, calibration_inputs, keep=steps.any)
    return run_steps(prepared, kept, quantizer)


def prepare(model: Union[ExportedProgram, GraphModule], quantizer, calibration_inputs=()) -> GraphModule:
    """``prepare_pt2e`` for PTQ, the observers on the device of ``model``. ``calibration_inputs``
    only for the check that there are some (None is refused before the work)."""
    graph_module = _as_graph_module(model)
    if getattr(quantizer, "is_qat", False):
        raise ValueError(
            "This quantizer was made with is_qat=True but post-training quantization was asked for "
            "(calibrate_and_quantize with is_qat=False, or prepare_and_calibrate). Pass is_qat=True "
            "and a train_fn to calibrate_and_quantize, or use NeutronQuantizer(spec, is_qat=False)."
        )
    _check_calibration_inputs(calibration_inputs)
    device = model_device(graph_module)
    return move_model(prepare_pt2e(graph_module, quantizer), device)


def _check_calibration_inputs(calibration_inputs) -> None:
    if calibration_inputs is None:
        raise ValueError("calibration_inputs is None: PTQ needs representative inputs to calibrate.")
    if isinstance(calibration_inputs, torch.Tensor):
        raise TypeError(
            f"calibration_inputs is one tensor of shape {list(calibration_inputs.shape)}; give an iterable of "
            "input batches, e.g. the list [x[i:i + 1] for i in range(len(x))] for a model exported with batch 1.")


def calibrate(prepared: GraphModule, calibration_inputs: Optional[Iterable], keep: bool = True) -> list:
    """Runs each input (tuple, or tensor) through the prepared model on its device; returns them
    as input tuples on that device when ``keep`` (the later steps use them again: an iterable may
    be single-pass)."""
    _check_calibration_inputs(calibration_inputs)
    device = model_device(prepared)
    specs = input_specs(prepared)
    count = 0
    kept = []
    with torch.no_grad():
        for index, sample in enumerate(progress(calibration_inputs, desc="calibrating", unit="batch")):
            inputs = as_input_tuple(sample)
            check_sample_types(index, inputs, specs)
            inputs = as_input_tuple(inputs, device)
            check_finite_inputs(index, inputs)
            try:
                prepared(*inputs)
            except Exception as e:  # an observer meeting values float32 cannot hold: say where
                where = first_overflow(prepared, inputs)
                if where is None:
                    raise
                raise ValueError(f"Calibration batch {index}: the values at {where} overflow float32 (inf, NaN or "
                                 "beyond 2^60), which int8 cannot represent. Scale the inputs into the range "
                                 "the model expects (e.g. [0, 1]).") from e
            count += 1
            if keep:
                kept.append(inputs)
    if count == 0:
        raise ValueError(
            "calibration_inputs is empty: PTQ needs at least one representative input batch "
            "to set the activation ranges."
        )
    check_ranges(prepared)  # warns where int8 cannot represent what calibration saw
    return kept


def run_steps(prepared: GraphModule, samples: list, quantizer) -> GraphModule:
    """The quantizer's steps after calibration, in this order, on ``samples`` (input tuples): the
    activation ranges of ``activation_observer="auto"`` chosen on the held-out part of them
    (``PtqSteps.holdout``), then AdaRound, bias correction and distillation, each guarded by that
    part (a step that does not gain there is undone); returns ``prepared``."""
    steps: PtqSteps = getattr(quantizer, "steps", None) or PtqSteps()
    if steps.any:
        train, heldout = split_holdout(samples, steps.holdout)
        if steps.activation_choice:
            choose_activation_ranges(prepared, heldout or train, heldout=bool(heldout))
        guard = StepGuard(prepared, train, heldout)
        if steps.adaround:
            guard.run("AdaRound", lambda data: adaround_weights(prepared, data, sequential=steps.adaround_sequential))
        if steps.bias_correction:
            guard.run("bias correction", lambda data: correct_biases(prepared, data))
        if steps.distillation is not None:
            guard.run("distillation", lambda data: distill(prepared, data, validation=heldout or None,
                                                           **steps.distillation))
    return prepared


def quantize_with_training(
    graph_module: GraphModule,
    calibration_inputs: Optional[Iterable],
    quantizer,
    train_fn: Optional[Callable[[GraphModule], None]],
) -> GraphModule:
    """prepare_qat_pt2e, ``train_fn(prepared)`` in train mode, convert, int32 biases.

    ``calibration_inputs``, when given, run through the trained model in eval mode before
    conversion (the fake-quantize observers still on, unless ``train_fn`` disabled them). The
    model trains on the device of ``graph_module``; ``train_fn`` moves its batches there.
    """
    if not getattr(quantizer, "is_qat", False):
        raise ValueError(
            "calibrate_and_quantize(..., is_qat=True) needs a QAT quantizer: "
            "NeutronQuantizer(spec, is_qat=True)."
        )
    if not callable(train_fn):
        raise ValueError(
            "calibrate_and_quantize(..., is_qat=True) needs train_fn: a function that trains the "
            "prepared model in place (train_fn(prepared_model)) and returns nothing."
        )
    device = model_device(graph_module)
    prepared = move_model(prepare_qat_pt2e(graph_module, quantizer), device)
    prepared = move_exported_model_to_train(prepared)
    result = train_fn(prepared)
    if result is not None and result is not prepared:
        raise ValueError(
            "train_fn must train the prepared model in place and return nothing; it returned "
            f"a {type(result).__name__}."
        )
    prepared = move_exported_model_to_eval(prepared)
    if calibration_inputs is not None:
        with torch.no_grad():
            for sample in calibration_inputs:
                prepared(*as_input_tuple(sample, device))
    # trained across processes (neutronq.ptq.distributed.wrap): the last step's observer ranges and
    # batch-norm statistics are reduced over the ranks, and the synchronisation is taken off
    sync = getattr(prepared, DISTRIBUTED_SYNC_ATTR, None)
    if sync is not None:
        sync.finish(prepared)
    check_ranges(prepared)  # warns where int8 cannot represent what training saw
    converted = convert_pt2e(prepared)
    for graph_pass in passes_after_convert(is_qat=True):
        converted = graph_pass(converted).graph_module
    return converted
