"""``neutronq.emulate(program)``: the whole lowered program as a batched module, its Neutron
delegates emulated (``neutronq.runtime.emulate``) and its CPU ops run as the ``.pte`` names them,
against ``run_on_host`` (LiteRT's ``BUILTIN_REF`` kernels for the delegates): identical outputs.

* every per-op lowering case (``tests/op_cases.py``): the program on float inputs from its
  calibration range, batched, against the host run sample by sample; its payload on random int8
  inputs against LiteRT (``emulate_helpers.emulate_and_compare``);
* a program with a CPU op between two NPU partitions; a batch of 8 equals 8 single samples;
  every program form (edge manager, ExecuTorch manager, .pte bytes and path);
* errors: a TFLite op the emulation does not know, a CPU op PyTorch does not know;
* EfficientNet-Lite0 per tensor and per channel (the session's shared lowering) on crops.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from pipelines import delegate_count, quantize_and_lower

import neutronq
from neutronq.runtime import load_program
from neutronq.runtime.emulate import OPS, EmulationError
from neutronq.runtime.emulated_program import EmulatedProgram, _functional


class ConvSinConv(torch.nn.Module):
    """sin has no quantization rule: it runs in float on the CPU between two NPU partitions."""

    def __init__(self):
        super().__init__()
        self.first = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.second = torch.nn.Conv2d(8, 6, 3, padding=1)

    def forward(self, x):
        return self.second(torch.sin(F.relu(self.first(x)))).flatten(1)


EXAMPLE = (torch.randn(1, 3, 12, 12),)


@pytest.fixture(scope="module")
def npu_cpu_npu():
    torch.manual_seed(0)
    lowered = quantize_and_lower(ConvSinConv(), EXAMPLE)
    assert delegate_count(lowered.edge) == 2
    return lowered.edge


def _host(program, batch: torch.Tensor) -> torch.Tensor:
    """run_on_host sample by sample, concatenated."""
    host = load_program(program)
    return torch.cat([host(batch[i : i + 1]) for i in range(batch.shape[0])])


def test_public_name():
    assert neutronq.emulate is neutronq.runtime.emulate
    assert "emulate" in dir(neutronq)


def test_npu_cpu_npu_identical_to_litert(npu_cpu_npu, tmp_path):
    x = torch.randn(8, 3, 12, 12) * 1.5
    module = neutronq.emulate(npu_cpu_npu)
    assert isinstance(module, torch.nn.Module) and len(module.delegates) == 2
    assert "aten::sin" in module.names  # the CPU op runs as the program names it
    got = module(x)
    want = _host(npu_cpu_npu, x)
    assert got.shape == want.shape == (8, 6 * 12 * 12)  # the flatten's view size took the batch
    assert torch.equal(got, want)
    # every program form run_on_host takes
    pte = copy.deepcopy(npu_cpu_npu).to_executorch()
    path = tmp_path / "p.pte"
    path.write_bytes(pte.buffer)
    for program in (pte, pte.buffer, path, str(path)):
        assert torch.equal(neutronq.emulate(program)(x), got)


def test_batch_of_8_equals_8_singles(npu_cpu_npu):
    module = neutronq.emulate(npu_cpu_npu)
    x = torch.randn(8, 3, 12, 12)
    batched = module(x)
    singles = torch.cat([module(x[i : i + 1]) for i in range(8)])
    assert torch.equal(batched, singles)
    assert torch.equal(module(x[:3]), batched[:3])  # any batch size


def test_signature_is_checked(npu_cpu_npu):
    module = neutronq.emulate(npu_cpu_npu)
    with pytest.raises(neutronq.runtime.SignatureError, match="any batch size"):
        module(torch.randn(2, 4, 12, 12))
    with pytest.raises(neutronq.runtime.SignatureError, match="takes 1 inputs"):
        module()


def test_to_device_and_back(npu_cpu_npu):
    module = neutronq.emulate(npu_cpu_npu).to("cpu")
    x = torch.randn(2, 3, 12, 12)
    assert torch.equal(module(x), _host(npu_cpu_npu, x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_identical(npu_cpu_npu):
    x = torch.randn(8, 3, 12, 12)
    module = neutronq.emulate(npu_cpu_npu)
    want = module(x)
    got = module.to("cuda")(x)  # CPU inputs are moved to the module's device
    assert got.device.type == "cuda"
    assert torch.equal(got.cpu(), want)


def test_unknown_tflite_op_names_it(npu_cpu_npu, monkeypatch):
    monkeypatch.delitem(OPS, "CONV_2D")
    with pytest.raises(EmulationError, match=r"delegate 0 of method 'forward'.*CONV_2D"):
        neutronq.emulate(npu_cpu_npu)


def test_unknown_cpu_op_names_it():
    with pytest.raises(EmulationError, match=r"no_such_lib::frobnicate\.out"):
        _functional("no_such_lib::frobnicate", "out")


def test_not_a_program():
    with pytest.raises(TypeError, match="emulate takes a lowered program"):
        EmulatedProgram(torch.nn.Linear(2, 2))


# ----------------------------------------------------------------------------------------------
# EfficientNet-Lite0 (the session's shared lowering, tests/conftest.py: the efficientnet group)
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("per_channel", [False, True], ids=["per_tensor", "per_channel"])
def test_efficientnet_lite0_program_identical_to_litert(efficientnet_int8, benchmark_images, per_channel):
    pte = efficientnet_int8.pte(per_channel)
    crops = benchmark_images[1][:100]
    module = neutronq.emulate(pte)
    got = torch.cat([module(crops[i : i + 25]) for i in range(0, len(crops), 25)])
    host = load_program(pte)
    want = torch.cat([host(c[None]) for c in crops])
    assert got.shape == want.shape == (100, 1000)
    differ = int((got != want).sum())
    assert differ == 0, f"{differ} of {want.numel()} logits differ from LiteRT"
