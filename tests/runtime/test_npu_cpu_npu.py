"""A graph that goes NPU -> CPU -> NPU: two delegates around an op with no quantization rule."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from helpers import calibration_set
from pipelines import delegate_count, fraction_within_one_step, output_scales, quantize_and_lower

from neutronq.runtime import NEUTRON_BACKEND_ID, load_program


class ConvSinConv(torch.nn.Module):
    """sin has no quantization rule: it runs in float on the CPU between two NPU partitions."""

    def __init__(self):
        super().__init__()
        self.first = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.second = torch.nn.Conv2d(8, 6, 3, padding=1)

    def forward(self, x):
        return self.second(torch.sin(F.relu(self.first(x))))


EXAMPLE = (torch.randn(1, 3, 12, 12),)


def _cpu_ops(edge) -> list[str]:
    gm = edge.exported_program().graph_module
    return [str(n.target) for n in gm.graph.nodes if n.op == "call_function" and "aten.sin" in str(n.target)]


def test_npu_cpu_npu_simulates_like_convert_pt2e(tmp_path):
    converted, edge, _, calibration = quantize_and_lower(ConvSinConv(), EXAMPLE)
    assert delegate_count(edge) == 2
    assert len(_cpu_ops(edge)) == 1  # sin stayed in the top-level (CPU) graph
    in_memory = load_program(edge)
    assert in_memory.delegate_ids == [NEUTRON_BACKEND_ID] * 2
    inputs = list(calibration) + calibration_set(EXAMPLE, count=4, seed=1)
    first = [in_memory(*x) for x in inputs]

    path = tmp_path / "npu_cpu_npu.pte"
    path.write_bytes(edge.to_executorch().buffer)
    from_disk = load_program(path)
    assert from_disk.delegate_ids == [NEUTRON_BACKEND_ID] * 2

    scale = output_scales(converted)[0]
    for x, simulated in zip(inputs, first):
        assert torch.equal(simulated, from_disk(*x))  # .pte on disk == in-memory program
        reference = converted(*x)
        assert fraction_within_one_step(reference, simulated, scale) >= 0.99
        assert reference.unique().numel() > 10
