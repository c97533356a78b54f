"""The quantizer's QAT units for ``NeutronQuantizer(spec, is_qat=True)``.

The flow is torchao's (``prepare_qat_pt2e``, ``move_exported_model_to_train``, training,
``move_exported_model_to_eval``, ``convert_pt2e``) followed by
``QuantizeFusedConvBnBiasAtenPass``, as in the QAT guide (``neutronq.ptq.flow`` runs it as
``calibrate_and_quantize(..., is_qat=True)``). Here:

* ``check_prepare_function``: a QAT quantizer goes to ``prepare_qat_pt2e`` and a PTQ one to
  ``prepare_pt2e`` (the quantizer's first step before annotation);
* ``QATSchedule``: freezes observers and batch-norm statistics after given epochs;
* ``freeze_bn_stats``: the batch-norm statistics of the conv / linear + BN units
  (``neutronq.aten_passes.fuse_batch_norm_for_qat``) stop or resume updating.

Each takes the prepared model or the ``DistributedDataParallel`` that wraps it
(``neutronq.ptq.distributed.wrap``).
"""

from __future__ import annotations

import sys
from typing import Callable, Optional

import torch
from torch.fx import GraphModule
from torchao.quantization.pt2e import disable_observer
from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e, prepare_qat_pt2e

from neutronq.aten_passes.fuse_batch_norm_for_qat import FREEZE_BN_ATTR, qat_batch_norm

__all__ = [
    "QATSchedule",
    "freeze_bn_stats",
    "has_qat_batch_norm",
    "check_prepare_function",
    "PrepareFunctionError",
    "DISTRIBUTED_SYNC_ATTR",
    "unwrap",
]

# the attribute of a prepared model trained across processes that holds its synchronisation
# (set by neutronq.ptq.distributed.wrap; read by the flow, which finishes it after training)
DISTRIBUTED_SYNC_ATTR = "_neutronq_distributed_sync"


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The prepared model inside a ``DistributedDataParallel`` (or ``DataParallel``); any other
    model as it is."""
    if isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
        return model.module
    return model


class PrepareFunctionError(ValueError):
    """A QAT quantizer given to ``prepare_pt2e``, or a PTQ one to ``prepare_qat_pt2e``."""


def _calling_prepare() -> Optional[str]:
    """'ptq' or 'qat' when called (indirectly) from torchao's prepare_pt2e / prepare_qat_pt2e."""
    codes = {prepare_pt2e.__code__: "ptq", prepare_qat_pt2e.__code__: "qat"}
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code in codes:
            return codes[frame.f_code]
        frame = frame.f_back
    return None


def check_prepare_function(is_qat: bool) -> Callable[[GraphModule], GraphModule]:
    def check(model: GraphModule) -> GraphModule:
        caller = _calling_prepare()
        if caller == "ptq" and is_qat:
            raise PrepareFunctionError(
                "This NeutronQuantizer was made with is_qat=True (fake-quantize for training) but "
                "was given to prepare_pt2e. Use prepare_qat_pt2e for QAT, or "
                "NeutronQuantizer(spec, is_qat=False) for post-training quantization."
            )
        if caller == "qat" and not is_qat:
            raise PrepareFunctionError(
                "This NeutronQuantizer was made with is_qat=False (calibration observers, no "
                "fake-quantize: training would not see int8) but was given to prepare_qat_pt2e. "
                "Use NeutronQuantizer(spec, is_qat=True) for QAT, or prepare_pt2e for PTQ."
            )
        return model

    return check


# --------------------------------------------------------------------------------------------
def has_qat_batch_norm(model: GraphModule) -> bool:
    model = unwrap(model)
    return any(n.op == "call_function" and n.target is qat_batch_norm for n in model.graph.nodes)


def freeze_bn_stats(model: GraphModule, freeze: bool = True) -> GraphModule:
    """Stop (or resume) updating the batch-norm statistics of a QAT-prepared model.

    Frozen, each conv/linear + BN unit trains with its running statistics, exactly as the
    converted model computes (torch's ``freeze_bn_stats`` for eager QAT modules).
    """
    setattr(unwrap(model), FREEZE_BN_ATTR, bool(freeze))
    return model


class QATSchedule:
    """Freezes observers after ``freeze_observers_after`` epochs and BN statistics after
    ``freeze_bn_after`` epochs (None: never). Call ``step()`` once at the end of every epoch::

        schedule = QATSchedule(prepared_model, freeze_observers_after=3, freeze_bn_after=2)
        for epoch in range(num_epochs):
            train_one_epoch(prepared_model)
            schedule.step()
    """

    def __init__(self, prepared_model: GraphModule, freeze_observers_after: Optional[int] = None,
                 freeze_bn_after: Optional[int] = None):
        for name, value in (("freeze_observers_after", freeze_observers_after),
                            ("freeze_bn_after", freeze_bn_after)):
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a non-negative number of epochs or None; got {value!r}.")
        if freeze_bn_after is not None and not has_qat_batch_norm(prepared_model):
            raise ValueError(
                "freeze_bn_after was given but this model has no QAT conv/linear + BN unit: "
                "prepare it with prepare_qat_pt2e(model, NeutronQuantizer(spec, is_qat=True))."
            )
        self.model = prepared_model
        self.freeze_observers_after = freeze_observers_after
        self.freeze_bn_after = freeze_bn_after
        self.epochs_done = 0
        self.observers_frozen = False
        self.bn_frozen = False
        self._apply()  # a 0 means frozen from the start

    def step(self) -> None:
        """Call once at the end of each epoch."""
        self.epochs_done += 1
        self._apply()

    def _apply(self) -> None:
        if (not self.observers_frozen and self.freeze_observers_after is not None
                and self.epochs_done >= self.freeze_observers_after):
            self.model.apply(disable_observer)
            self.observers_frozen = True
        if (not self.bn_frozen and self.freeze_bn_after is not None
                and self.epochs_done >= self.freeze_bn_after):
            freeze_bn_stats(self.model)
            self.bn_frozen = True
