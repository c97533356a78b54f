"""The QAT-against-PTQ experiment on Fashion-MNIST (Debian package ``dataset-fashion-mnist``):
float training for N epochs; PTQ of that model; QAT fine-tuning for k epochs; float fine-tuning
for the same k epochs as the control. ``bench_qat_fashion_mnist.py`` runs it on the full data;
``tests/quantizer/test_qat_fashion_mnist.py`` runs it small."""

from __future__ import annotations

import copy
from typing import Optional

import torch
from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e, prepare_qat_pt2e

from neutronq import NeutronQuantizer, NeutronTargetSpec, QuantizeFusedConvBnBiasAtenPass
from neutronq.data.fashion_mnist import accuracy, fashion_cnn, load_fashion_mnist, train_epoch
from neutronq.quantizer.qat import QATSchedule

__all__ = ["compare_qat_ptq"]


def compare_qat_ptq(
    n_train: Optional[int] = None,
    n_test: Optional[int] = None,
    float_epochs: int = 3,
    finetune_epochs: int = 1,
    seed: int = 0,
    lr: float = 1e-3,
    finetune_lr: float = 2e-4,
    calibration_batches: int = 16,
    strict: bool = False,
    log=None,
) -> dict:
    """Float for ``float_epochs``; PTQ of it; QAT fine-tuning for ``finetune_epochs``; float
    fine-tuning for the same epochs as the control. Returns the four test accuracies (percent)
    and the sizes used. Exported with batch 1 (as the QAT guide), trained with batch 64."""
    say = log or (lambda *a: None)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    xtr, ytr = load_fashion_mnist("train", n_train)
    xte, yte = load_fashion_mnist("test", n_test)
    spec = NeutronTargetSpec("imxrt700")
    example = (xtr[:1],)

    model = fashion_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for epoch in range(float_epochs):
        say(f"float epoch {epoch}: loss {train_epoch(model, xtr, ytr, opt, generator=g):.3f}")
    result = {"n_train": len(xtr), "n_test": len(xte), "float_epochs": float_epochs,
              "finetune_epochs": finetune_epochs, "float": accuracy(model, xte, yte)}

    # PTQ of the float model
    prepared = prepare_pt2e(torch.export.export(copy.deepcopy(model).eval(), example, strict=strict).module(),
                            NeutronQuantizer(spec))
    with torch.no_grad():
        for i in range(calibration_batches):
            prepared(xtr[i * 32 : (i + 1) * 32])
    result["ptq"] = accuracy(convert_pt2e(prepared), xte, yte)

    # QAT fine-tuning of the float model
    prepared = prepare_qat_pt2e(
        torch.export.export(copy.deepcopy(model).eval(), example, strict=strict).module(),
        NeutronQuantizer(spec, is_qat=True),
    )
    prepared = move_exported_model_to_train(prepared)
    schedule = QATSchedule(prepared, freeze_observers_after=max(finetune_epochs - 1, 1),
                           freeze_bn_after=max(finetune_epochs - 1, 1))
    opt = torch.optim.Adam(prepared.parameters(), lr=finetune_lr)
    for epoch in range(finetune_epochs):
        say(f"QAT epoch {epoch}: loss {train_epoch(prepared, xtr, ytr, opt, generator=g):.3f}")
        schedule.step()
    prepared = move_exported_model_to_eval(prepared)
    result["qat_fake_quant"] = accuracy(prepared, xte, yte)
    quantized = QuantizeFusedConvBnBiasAtenPass(default_zero_bias=True)(convert_pt2e(prepared)).graph_module
    result["qat"] = accuracy(quantized, xte, yte)

    # control: float fine-tuning, same epochs and learning rate
    control = copy.deepcopy(model)
    opt = torch.optim.Adam(control.parameters(), lr=finetune_lr)
    for epoch in range(finetune_epochs):
        say(f"control epoch {epoch}: loss {train_epoch(control, xtr, ytr, opt, generator=g):.3f}")
    result["float_control"] = accuracy(control, xte, yte)
    return result
