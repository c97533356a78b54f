"""The QAT flow around training: calibrate_and_quantize(is_qat=True), QATSchedule, the batch
size of the guide (export with 1, train with 5), and the wrong prepare function."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from helpers import Q, export
from torchao.quantization.pt2e import (
    FakeQuantizeBase,
    move_exported_model_to_eval,
    move_exported_model_to_train,
)
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e, prepare_qat_pt2e

from neutronq import NeutronQuantizer, NeutronTargetSpec, QATSchedule, calibrate_and_quantize
from neutronq.aten_passes.relax_batch_guard import BatchSizeError
from neutronq.quantizer.qat import PrepareFunctionError, freeze_bn_stats

SPEC = NeutronTargetSpec("imxrt700")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.bn(self.conv(x)).relu(), 1), 1))


class ViewNet(Net):
    """``x.view(x.size(0), -1)``: a static export records the batch size in the view, which
    RelaxBatchGuardPass gives back its run-time size."""

    def forward(self, x):
        y = nn.functional.adaptive_avg_pool2d(self.bn(self.conv(x)).relu(), 1)
        return self.fc(y.view(y.size(0), -1))


class BakedNet(Net):
    """The batch merged into another dimension: the exported batch size is part of the graph."""

    def forward(self, x):
        y = nn.functional.adaptive_avg_pool2d(self.bn(self.conv(x)).relu(), 1)
        pairs = y.reshape(x.size(0) * 2, 4)  # each sample's 8 channels as two rows of 4
        return self.fc(torch.cat([pairs, pairs], 1).reshape(x.size(0), 2, 8).mean(1))


def _prepared(model=None, strict=False, batch=1):
    gm = export(model or Net(), (torch.randn(batch, 3, 8, 8),), strict).module()
    return move_exported_model_to_train(prepare_qat_pt2e(gm, NeutronQuantizer(SPEC, is_qat=True)))


def _train(prepared, steps=3, batch=5):
    opt = torch.optim.SGD(prepared.parameters(), lr=1e-2, momentum=0.9)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(prepared(torch.randn(batch, 3, 8, 8)), torch.randint(0, 4, (batch,))).backward()
        opt.step()


# --- batch size -------------------------------------------------------------------------------
def test_guide_exports_with_batch_1_and_trains_with_batch_5(strict):
    prepared = _prepared(strict=strict)
    _train(prepared, batch=5)
    prepared = move_exported_model_to_eval(prepared)
    with torch.no_grad():
        out = prepared(torch.randn(7, 3, 8, 8))
    assert out.shape == (7, 4)


def test_other_dimensions_stay_guarded(strict):
    prepared = _prepared(strict=strict)
    with pytest.raises(ValueError, match=r"exported for shape \[1, 3, 8, 8\]"):
        prepared(torch.randn(5, 3, 9, 8))


def test_view_of_the_batch_trains_with_another_batch(strict):
    prepared = _prepared(ViewNet(), strict=strict)
    _train(prepared, batch=5)
    with torch.no_grad():
        assert prepared(torch.randn(3, 3, 8, 8)).shape == (3, 4)


def test_batch_baked_into_the_graph_names_the_fix(strict):
    prepared = _prepared(BakedNet(), strict=strict)
    _train(prepared, batch=1)  # the exported batch size still works
    with pytest.raises(BatchSizeError, match="dynamic batch dimension") as err:
        _train(prepared, batch=5)
    assert "exported with batch size 1" in str(err.value)


def test_batch_baked_in_works_when_exported_with_the_training_batch(strict):
    prepared = _prepared(BakedNet(), strict=strict, batch=5)
    before = [p.detach().clone() for p in prepared.parameters()]
    _train(prepared, batch=5)
    assert any(not torch.equal(b, p) for b, p in zip(before, prepared.parameters()))  # it trained
    with torch.no_grad():
        assert prepared(torch.randn(5, 3, 8, 8)).shape == (5, 4)
    # the graph baked batch 5 in: another batch size is refused with the fix, not a view error
    with pytest.raises(BatchSizeError, match="exported with batch size 5"):
        prepared(torch.randn(3, 3, 8, 8))


def test_ptq_converted_model_evaluates_in_batches(strict):
    """The guard is relaxed for PTQ too: a model exported with batch 1 evaluates batches."""
    gm = export(Net(), (torch.randn(1, 3, 8, 8),), strict).module()
    prepared = prepare_pt2e(gm, NeutronQuantizer(SPEC))
    with torch.no_grad():
        for _ in range(4):
            prepared(torch.randn(1, 3, 8, 8))
    converted = convert_pt2e(prepared)
    x = torch.randn(6, 3, 8, 8)
    with torch.no_grad():
        batched = converted(x)
        single = torch.cat([converted(x[i : i + 1]) for i in range(6)])
    torch.testing.assert_close(batched, single)


# --- wrong prepare function ------------------------------------------------------------------
def test_qat_quantizer_given_to_prepare_pt2e(strict):
    gm = export(Net(), (torch.randn(1, 3, 8, 8),), strict).module()
    with pytest.raises(PrepareFunctionError, match="prepare_qat_pt2e"):
        prepare_pt2e(gm, NeutronQuantizer(SPEC, is_qat=True))


def test_ptq_quantizer_given_to_prepare_qat_pt2e(strict):
    gm = export(Net(), (torch.randn(1, 3, 8, 8),), strict).module()
    with pytest.raises(PrepareFunctionError, match="is_qat=True"):
        prepare_qat_pt2e(gm, NeutronQuantizer(SPEC))


# --- calibrate_and_quantize(is_qat=True) ------------------------------------------------------
def _is_int32_bias(node) -> bool:
    return node.target == Q.dequantize_per_tensor.default and node.args[-1] == torch.int32


@pytest.mark.parametrize("as_program", [True, False], ids=["program", "module"])
def test_calibrate_and_quantize_qat(as_program):
    seen = {}

    def train_fn(prepared):
        seen["fake_quant"] = any(isinstance(m, FakeQuantizeBase) for m in prepared.modules())
        _train(prepared, batch=5)

    program = export(Net(), (torch.randn(1, 3, 8, 8),))
    model = program if as_program else program.module()
    quantized = calibrate_and_quantize(model, None, NeutronQuantizer(SPEC, is_qat=True),
                                       is_qat=True, train_fn=train_fn)
    assert seen["fake_quant"]
    ops = [n for n in quantized.graph.nodes if n.target in (torch.ops.aten.conv2d.default, torch.ops.aten.linear.default)]
    assert len(ops) == 2 and all(_is_int32_bias(op.args[2]) for op in ops)
    assert quantized(torch.randn(3, 3, 8, 8)).shape == (3, 4)


def test_calibrate_and_quantize_qat_runs_calibration_inputs_after_training():
    calls = []
    quantized = calibrate_and_quantize(
        export(Net(), (torch.randn(1, 3, 8, 8),)), [torch.randn(2, 3, 8, 8)] * 2,
        NeutronQuantizer(SPEC, is_qat=True), is_qat=True, train_fn=lambda p: calls.append(p) and None,
    )
    assert len(calls) == 1 and quantized is not None


def test_calibrate_and_quantize_qat_needs_train_fn():
    with pytest.raises(ValueError, match="train_fn"):
        calibrate_and_quantize(export(Net(), (torch.randn(1, 3, 8, 8),)), None,
                               NeutronQuantizer(SPEC, is_qat=True), is_qat=True)


def test_calibrate_and_quantize_qat_needs_a_qat_quantizer():
    with pytest.raises(ValueError, match="is_qat=True"):
        calibrate_and_quantize(export(Net(), (torch.randn(1, 3, 8, 8),)), None,
                               NeutronQuantizer(SPEC), is_qat=True, train_fn=lambda p: None)


def test_train_fn_must_train_in_place():
    with pytest.raises(ValueError, match="return nothing"):
        calibrate_and_quantize(export(Net(), (torch.randn(1, 3, 8, 8),)), None,
                               NeutronQuantizer(SPEC, is_qat=True), is_qat=True,
                               train_fn=lambda p: Net())


# --- QATSchedule ------------------------------------------------------------------------------
def test_schedule_freezes_observers_then_bn_statistics():
    prepared = _prepared()
    fqs = [m for m in prepared.modules() if isinstance(m, FakeQuantizeBase)]
    schedule = QATSchedule(prepared, freeze_observers_after=1, freeze_bn_after=2)

    def epoch():
        mean = prepared.bn.running_mean.clone()
        scales = [fq.scale.clone() for fq in fqs]
        _train(prepared, steps=2)
        schedule.step()
        return (not torch.equal(mean, prepared.bn.running_mean),
                any(not torch.equal(a, fq.scale) for a, fq in zip(scales, fqs)))

    assert epoch() == (True, True)  # epoch 0: everything learns
    assert schedule.observers_frozen and not schedule.bn_frozen
    assert all(int(fq.observer_enabled[0]) == 0 and int(fq.fake_quant_enabled[0]) == 1 for fq in fqs)
    assert epoch() == (True, False)  # epoch 1: BN statistics still move, scales do not
    assert schedule.bn_frozen
    assert epoch() == (False, False)  # epoch 2: both frozen


def test_frozen_bn_trains_with_what_the_converted_model_computes():
    """With frozen statistics the train-mode forward equals the eval-mode forward."""
    prepared = _prepared()
    _train(prepared)
    from torchao.quantization.pt2e import disable_observer

    prepared.apply(disable_observer)
    freeze_bn_stats(prepared)
    x = torch.randn(5, 3, 8, 8)
    with torch.no_grad():
        train_out = prepared(x)
        eval_out = move_exported_model_to_eval(prepared)(x)
    torch.testing.assert_close(train_out, eval_out)


def test_schedule_validates_its_arguments():
    prepared = _prepared()
    with pytest.raises(ValueError, match="non-negative"):
        QATSchedule(prepared, freeze_observers_after=-1)
    gm = export(nn.Sequential(nn.Conv2d(3, 4, 3)), (torch.randn(1, 3, 8, 8),)).module()
    no_bn = prepare_qat_pt2e(gm, NeutronQuantizer(SPEC, is_qat=True))
    with pytest.raises(ValueError, match="no QAT conv/linear"):
        QATSchedule(no_bn, freeze_bn_after=1)
