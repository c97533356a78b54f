"""Batch evaluation: emulated (default, batched) or in LiteRT (the oracle, sliced to the program's
fixed batch); the same figures either way, and a fallback to LiteRT when emulation cannot run."""

from __future__ import annotations

import math

import pytest
import torch
from pipelines import quantize_and_lower

from neutronq.runtime import Evaluation, evaluate, load_program


class Classifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.fc = torch.nn.Linear(8, 10)

    def forward(self, x):
        y = torch.nn.functional.adaptive_avg_pool2d(torch.relu(self.conv(x)), 1)
        return self.fc(y.flatten(1))


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = Classifier().eval()
    example = (torch.randn(1, 3, 10, 10),)
    converted, edge, _, _ = quantize_and_lower(model, example)
    data = torch.randn(12, 3, 10, 10)
    return model, converted, load_program(edge.to_executorch().buffer), data


def _by_hand(program, reference, data):
    sim = torch.cat([program(x[None]) for x in data]).double()
    ref = torch.cat([reference(x[None]) for x in data]).double()
    sqnr = 10 * math.log10(ref.pow(2).sum().item() / (ref - sim).pow(2).sum().item())
    top1 = (ref.argmax(-1) == sim.argmax(-1)).double().mean().item()
    return sqnr, top1


@pytest.mark.parametrize("backend", ["emulate", "litert"])
def test_evaluate_reports_what_it_measured(setup, backend):
    model, converted, program, data = setup
    result = evaluate(program, data, float_model=model, quantized_model=converted, backend=backend)
    assert isinstance(result, Evaluation) and result.samples == 12
    assert result.backend == backend and result.fallback is None
    for name, reference in (("float", model), ("quantized", converted)):
        sqnr, top1 = _by_hand(program, reference, data)
        got = result.get(name)
        assert got.sqnr_db == pytest.approx(sqnr, abs=1e-9 if backend == "litert" else 1e-4)  # batch: float bits
        assert got.top1_agreement == pytest.approx(top1)
    # the simulation is closer to the int8 model than to the float one
    assert result.get("quantized").sqnr_db > result.get("float").sqnr_db
    assert "output 0 vs quantized model: SQNR" in str(result)


def test_dataloader_with_labels_gives_the_same_figures(setup):
    model, converted, program, data = setup
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(data, torch.arange(12)), batch_size=4)
    a = evaluate(program, data, float_model=model, quantized_model=converted, backend="litert")
    b = evaluate(program, loader, float_model=model, quantized_model=converted, backend="litert")
    assert a == b
    assert evaluate(program, loader, quantized_model=converted, max_samples=5).samples == 5
    # emulated: the same figures (the float model's batch may change its last bits)
    c = evaluate(program, loader, float_model=model, quantized_model=converted)
    assert c.backend == "emulate" and c.samples == a.samples
    for x, y in zip(a.comparisons, c.comparisons):
        assert (x.output, x.reference, x.top1_agreement) == (y.output, y.reference, y.top1_agreement)
        assert x.sqnr_db == pytest.approx(y.sqnr_db, abs=1e-4)
    assert evaluate(program, data, quantized_model=converted, max_samples=5, batch_size=4).samples == 5


def test_emulation_error_falls_back_to_litert(setup, monkeypatch, caplog):
    from neutronq.runtime.emulate import OPS

    _, converted, program, data = setup
    want = evaluate(program, data, quantized_model=converted, backend="litert")
    monkeypatch.delitem(OPS, "CONV_2D")
    with caplog.at_level("WARNING", logger="neutronq.runtime.evaluate"):
        got = evaluate(program, data, quantized_model=converted)
    assert got.backend == "litert" and "CONV_2D" in got.fallback
    assert got.comparisons == want.comparisons
    assert "evaluating it with LiteRT instead" in caplog.text and "CONV_2D" in caplog.text
    assert "emulation could not run it, LiteRT did" in str(got)


def test_precomputed_reference_outputs(setup):
    model, converted, program, data = setup
    want = evaluate(program, data, float_model=model, quantized_model=converted, batch_size=5)
    with torch.no_grad():
        outputs = {"float": model(data), "quantized": torch.cat([converted(x[None]) for x in data])}
    got = evaluate(program, data, reference_outputs=outputs, batch_size=5)
    for x, y in zip(want.comparisons, got.comparisons):
        assert (x.output, x.reference, x.top1_agreement) == (y.output, y.reference, y.top1_agreement)
        assert x.sqnr_db == pytest.approx(y.sqnr_db, abs=1e-4)
    with pytest.raises(ValueError, match="hold 6 samples"):
        evaluate(program, data, reference_outputs={"float": outputs["float"][:6]})


def test_unknown_backend(setup):
    with pytest.raises(ValueError, match="backend must be one of"):
        evaluate(setup[2], setup[3], backend="tflite")


def test_batch_that_cannot_be_sliced(setup):
    _, _, _, data = setup
    converted, edge, _, _ = quantize_and_lower(Classifier().eval(), (torch.randn(2, 3, 10, 10),))
    with pytest.raises(ValueError, match=r"A batch of 3 samples cannot be split into the program's fixed batch of 2"):
        evaluate(edge, [data[:3]], quantized_model=converted)
