"""What calibration saw that int8 cannot represent is said, naming the layers: values that
overflow (the int8 model gives zeros there), and ranges below the 2^-12 scale floor (everything
quantizes to the zero point)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from helpers import export

from neutronq import NeutronQuantizer, NeutronTargetSpec, calibrate_and_quantize
from neutronq.quantizer.ranges import RangeWarning


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(torch.relu(self.conv(x)), 1).flatten(1))


def _quantize(scale: float):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    example = (torch.rand(1, 3, 8, 8, generator=g) * scale,)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        calibrate_and_quantize(export(Small(), example), [(torch.rand(1, 3, 8, 8, generator=g) * scale,)
                                                          for _ in range(4)],
                               NeutronQuantizer(NeutronTargetSpec("imxrt700")))
    return [str(w.message) for w in caught if issubclass(w.category, RangeWarning)]


def test_ordinary_ranges_say_nothing():
    assert _quantize(1.0) == []


def test_values_too_large_for_float32_arithmetic_are_named():
    """Inputs around 1e30: the observers' range search overflows and the int8 model gave zeros."""
    (message,) = _quantize(1e30)
    assert "overflow" in message and "x (the model's input)" in message and "linear (fc)" in message


def test_values_that_overflow_inside_the_model_are_a_clear_error():
    """Inputs around 3e38 overflow to inf in the conv: torchao's observer failed deep inside."""
    with pytest.raises(ValueError, match=r"Calibration batch 0: the values at .* overflow float32"):
        _quantize(3e38)


def test_a_range_below_the_scale_floor_is_named():
    """Inputs of 1e-8 quantize to the zero point everywhere (activation scale floor 2^-12)."""
    (message,) = _quantize(1e-8)
    assert "below int8's smallest step" in message and "x (the model's input)" in message
