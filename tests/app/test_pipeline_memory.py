"""The job's memory phase: a model too large for a target is flagged, with the numbers."""

from __future__ import annotations

import torch
import torch.nn as nn
from pipelines import quantize_and_lower

from neutronq.app.pipeline import memory_and_floor


class Wide(nn.Module):
    """About 2.4 MB of int8 weights: more than an MCX N94x's 2 MB of flash and 512 KB of SRAM."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(1536, 1024), nn.Linear(1024, 768)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def test_too_large_for_mcxn94x_is_flagged_and_fits_imx95_dram(tmp_path):
    lowered = quantize_and_lower(Wide(), (torch.randn(1, 1536),))
    pte = tmp_path / "wide.pte"
    pte.write_bytes(lowered.edge.to_executorch().buffer)
    small = memory_and_floor(pte, "mcxn94x")
    assert small["fit"]["status"] == "does not fit"
    assert small["npu_weight_bytes"] > 2_300_000
    flash = next(c for c in small["fit"]["checks"] if c["memory"] == "flash")
    assert flash["status"] == "does not fit" and flash["capacity_bytes"] == 2 * 1024 * 1024
    assert small["compute_floor"]["seconds"] is not None  # 16 MACs/cycle x 150 MHz
    assert abs(small["compute_floor"]["seconds"] - (1536 * 1024 + 1024 * 768) / (16 * 150e6)) < 1e-9
    assert "does not fit" in small["lines"][0]
    big = memory_and_floor(pte, "imx95")
    assert big["fit"]["status"] != "does not fit"
