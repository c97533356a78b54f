"""Every step runs on the device of the model and its inputs (neutronq.devices).

There is no GPU here, so two things are checked on the CPU:
  * the steps take a model and inputs placed with ``torch.device`` objects and give the same
    result as without;
  * nothing neutronq itself creates while a step runs lands on the default device (the CPU) when
    the model is elsewhere: every tensor factory called from neutronq's code names its device
    (the model's, an input's, or ``SAMPLING_DEVICE`` for the random draws that must not depend on
    the device). ``DeviceAudit`` records the calls that do not, with their file and line; a CUDA
    run would fail at such a line with "Expected all tensors to be on the same device". A module's
    constructor is left out: what it registers moves with the module (torchao moves the observers
    it inserts to the model's device, and the flow moves the prepared model there).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

from neutronq import NeutronQuantizer, NeutronTargetSpec, calibrate_and_quantize, prepare_and_calibrate
from neutronq.devices import move_model
from neutronq.ptq.error_budget import error_budget
from neutronq.quantizer.qat import QATSchedule

SOURCE = str(Path(__file__).resolve().parents[2] / "src" / "neutronq")
_FACTORIES = {torch.zeros, torch.ones, torch.full, torch.empty, torch.arange, torch.linspace, torch.logspace,
              torch.tensor, torch.as_tensor, torch.rand, torch.randn, torch.randint, torch.randperm, torch.eye,
              torch.scalar_tensor}


class DeviceAudit(TorchFunctionMode):
    """Records the tensor factories called from neutronq's source without a device."""

    def __init__(self):
        super().__init__()
        self.unplaced: set[str] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _FACTORIES and "device" not in kwargs \
                and not (func is torch.as_tensor and args and isinstance(args[0], torch.Tensor)):
            frame = sys._getframe(1)
            if frame.f_code.co_filename.startswith(SOURCE) and frame.f_code.co_name != "__init__":
                where = Path(frame.f_code.co_filename).relative_to(SOURCE)
                self.unplaced.add(f"{where}:{frame.f_lineno} torch.{func.__name__}")
        return func(*args, **kwargs)


def test_the_audit_sees_a_factory_without_a_device():
    audit = DeviceAudit()
    code = compile("torch.zeros(3); torch.zeros(3, device='cpu')", f"{SOURCE}/fake.py", "exec")
    with audit:
        exec(code, {"torch": torch})
    assert audit.unplaced == {"fake.py:1 torch.zeros"}


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.dw = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        x = torch.nn.functional.relu6(self.bn(self.conv(x)))
        x = torch.nn.functional.relu(self.dw(x))
        return self.fc(torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


def _inputs(count: int, device: torch.device, batch: int = 1):
    g = torch.Generator().manual_seed(1)
    return [torch.randn(batch, 3, 12, 12, generator=g).to(device) for _ in range(count)]


def _model():
    torch.manual_seed(0)
    return _Net().eval()


@pytest.mark.parametrize("options", [
    dict(per_channel=True, weight_observer="mse", activation_observer="percentile", adaround=True,
         bias_correction=True, distillation={"epochs": 1, "batch": 4}),
    dict(per_channel=False, activation_observer="mse", equalization=True),
], ids=["per-channel-mse-percentile-steps", "per-tensor-mse-equalized"])
def test_ptq_steps_run_on_the_models_device(options):
    device = torch.device("cpu")
    quantizer = lambda: NeutronQuantizer(NeutronTargetSpec("imxrt700"), **options)  # noqa: E731
    exported = torch.export.export(_model(), (torch.randn(1, 3, 12, 12),))
    plain = prepare_and_calibrate(exported, _inputs(4, torch.device("cpu")), quantizer())
    audit = DeviceAudit()
    with audit:
        placed = prepare_and_calibrate(move_model(exported.module(), device), _inputs(4, device), quantizer())
        budget = error_budget(placed, _inputs(4, device), top_activations=1)
        converted = convert_pt2e(placed)
    assert audit.unplaced == set(), sorted(audit.unplaced)
    assert budget.samples == 4
    reference = convert_pt2e(plain)
    x = _inputs(1, device)[0]
    assert torch.equal(converted(x), reference(x))


def test_qat_runs_on_the_models_device():
    device = torch.device("cpu")
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(32, 3, 12, 12, generator=g), torch.randint(0, 4, (32,), generator=g)

    def train(prepared):
        schedule = QATSchedule(prepared, freeze_observers_after=1, freeze_bn_after=1)
        optimizer = torch.optim.Adam(prepared.parameters(), lr=1e-3)
        for _ in range(2):
            for start in range(0, 32, 8):
                optimizer.zero_grad()
                loss = torch.nn.functional.cross_entropy(prepared(x[start : start + 8].to(device)),
                                                         y[start : start + 8].to(device))
                loss.backward()
                optimizer.step()
            schedule.step()

    exported = torch.export.export(_model(), (torch.randn(1, 3, 12, 12),))
    quantizer = NeutronQuantizer(NeutronTargetSpec("imxrt700"), is_qat=True, per_channel=True)
    audit = DeviceAudit()
    with audit:
        quantized = calibrate_and_quantize(move_model(exported.module(), device), _inputs(2, device), quantizer,
                                           is_qat=True, train_fn=train)
    assert audit.unplaced == set(), sorted(audit.unplaced)
    assert quantized(_inputs(1, device)[0]).shape == (1, 4)
