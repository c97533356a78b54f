"""NeutronPartitioner: what it delegates, what stays on the CPU and why, and that the rest runs."""

from __future__ import annotations

import os
import sys
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lowering"))

from helpers import quantize  # noqa: E402
from pipelines import delegates, lower, quantize_and_lower, run_lowered  # noqa: E402

from neutronq import NeutronPartitioner, generate_neutron_compile_spec  # noqa: E402
from neutronq.neutron_partitioner import CPU_REASON_KEY, NothingDelegatedWarning  # noqa: E402


class Mixed(nn.Module):
    """NPU conv -> conv above the kernel-volume limit -> sin (no rule) -> NPU linear."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        # kH*kW*round_up(16, 8) = 64*64*16 = 65536 > 65535
        self.big = nn.Conv2d(16, 4, 64)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = self.big(F.relu(self.conv(x)))
        return self.fc(torch.sin(x).flatten(1))


def _example():
    return (torch.randn(1, 3, 64, 64),)


def _delegate_inputs_are_int8(edge) -> bool:
    ep = edge.exported_program()
    for n in ep.graph.nodes:
        if n.op == "call_function" and getattr(n.target, "__name__", "") == "executorch_call_delegate":
            for a in n.args[1:]:
                if a.meta["val"].dtype != torch.int8:
                    return False
            for u in n.users:
                if u.meta["val"].dtype != torch.int8:
                    return False
    return True


def _pte_roundtrip(edge):
    import executorch.kernels.quantized  # noqa: F401  (CPU kernels for quantize / dequantize)
    from executorch.runtime import Runtime

    program = edge.to_executorch()
    return Runtime.get().load_program(program.buffer), program


@pytest.fixture(scope="module")
def mixed(request):
    converted, edge, partitioner, calibration = quantize_and_lower(Mixed(), _example())
    return converted, edge, partitioner, calibration


def test_unsupported_ops_stay_on_cpu_with_reason(mixed):
    converted, edge, partitioner, calibration = mixed
    reasons = {c.node: c for c in partitioner.cpu_ops}
    big = [c for c in partitioner.cpu_ops if c.op == "aten.convolution.default"]
    assert len(big) == 1 and "65535" in big[0].reason and "imxrt700" in big[0].reason
    sin = [c for c in partitioner.cpu_ops if c.op == "aten.sin.default"]
    assert len(sin) == 1 and "no NPU lowering" in sin[0].reason
    # the other conv and the linear are delegated, in two partitions around the CPU ops
    assert len(delegates(edge)) == 2
    assert len(partitioner.report.partitions) == 2
    assert all(c.op != "aten.addmm.default" for c in reasons.values())
    # every CPU op has its reason in the graph too
    ep = edge.exported_program()
    for n in ep.graph.nodes:
        if n.name in reasons:
            assert n.meta[CPU_REASON_KEY] == reasons[n.name].reason
    assert 0 < partitioner.report.npu_mac_fraction < 1
    assert _delegate_inputs_are_int8(edge)
    assert partitioner.report.seconds > 0  # partition()'s own time, for benchmarks


def test_npu_cpu_npu_model_runs_and_matches(mixed):
    converted, edge, partitioner, calibration = mixed
    for x in calibration[:3]:
        ref, got = converted(*x), run_lowered(edge, x)[0]
        scale = float(next(n for n in edge.exported_program().graph.nodes if n.op == "output").args[0][0].args[1])
        assert float((ref - got).abs().max()) <= 2 * scale


def test_pte_with_cpu_ops_loads_as_program(mixed, capfd):
    _, edge, _, _ = mixed
    program, _ = _pte_roundtrip(edge)
    assert "forward" in program.method_names
    # a board's runtime registers the Neutron backend; the host's does not: loading the method
    # fails for that reason (ExecuTorch's NotFound, 0x20), not for anything else in the program
    with pytest.raises(RuntimeError, match=r"Failed to load method forward, error: 0x:20"):
        program.load_method("forward")
    assert "Backend NeutronBackend is not registered" in capfd.readouterr().err


def test_unknown_macs_limit_is_not_enforced_and_reported():
    _, converted, _ = quantize(Mixed(), _example())
    edge, partitioner = lower(converted, _example(), target="mcxn94x")
    assert not [c for c in partitioner.cpu_ops if c.op == "aten.convolution.default"]
    assert any("not enforced" in u and "mcxn94x" in u for u in partitioner.report.unenforced_limits)


class ConvLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(8 * 6 * 6, 4)

    def forward(self, x):
        return self.fc(F.relu(self.conv(x)).flatten(1))


@pytest.mark.parametrize("spelling", ["aten.conv2d.default", "aten::conv2d"])
def test_operators_not_to_delegate(spelling, strict):
    example = (torch.randn(1, 3, 8, 8),)
    _, edge, partitioner, _ = quantize_and_lower(ConvLinear(), example, strict,
                                                 operators_not_to_delegate=[spelling])
    conv = [c for c in partitioner.cpu_ops if c.op == "aten.convolution.default"]
    assert len(conv) == 1 and "operators_not_to_delegate" in conv[0].reason and spelling in conv[0].reason
    assert len(delegates(edge)) == 1  # the linear still is
    assert not [c for c in partitioner.cpu_ops if c.op == "aten.addmm.default"]


def test_linear_excluded_by_its_pytorch_name():
    example = (torch.randn(1, 3, 8, 8),)
    _, edge, partitioner, _ = quantize_and_lower(ConvLinear(), example, operators_not_to_delegate=["aten::linear"])
    assert [c.op for c in partitioner.cpu_ops if "excluded" in c.reason] == ["aten.addmm.default"]


def test_unquantized_model_delegates_nothing_and_says_why():
    model = ConvLinear().eval()
    example = (torch.randn(1, 3, 8, 8),)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        edge, partitioner = lower(model, example)
    assert delegates(edge) == []
    msgs = [str(w.message) for w in caught if issubclass(w.category, NothingDelegatedWarning)]
    assert msgs and "not quantized" in msgs[0] and "NeutronQuantizer" in msgs[0]
    assert all("not quantized" in c.reason for c in partitioner.cpu_ops if c.op != "aten.permute_copy.default")
    # a .pte without delegates runs on the host
    program, _ = _pte_roundtrip(edge)
    out = program.load_method("forward").execute([example[0]])[0]
    torch.testing.assert_close(out, model(*example), rtol=1e-4, atol=1e-5)


def test_quantized_pte_without_delegates_runs_on_host():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()).eval()
    example = (torch.randn(1, 3, 8, 8),)
    converted, edge, partitioner, _ = quantize_and_lower(model, example, operators_not_to_delegate=["aten::conv2d"])
    assert delegates(edge) == []
    program, _ = _pte_roundtrip(edge)
    out = program.load_method("forward").execute([example[0]])[0]
    torch.testing.assert_close(out, converted(*example), rtol=0, atol=1e-6)


class Shuffle(nn.Module):
    """sin (CPU) -> view (alone between two CPU ops) -> sin (CPU)."""

    def forward(self, x):
        return torch.sin(torch.sin(x).view(1, -1, 4))


def test_data_movement_only_partition_is_not_delegated():
    example = (torch.randn(1, 4, 4, 4),)
    _, edge, partitioner, _ = quantize_and_lower(Shuffle(), example)
    assert delegates(edge) == []
    view = [c for c in partitioner.cpu_ops if c.op == "aten.view_copy.default"]
    assert view and all("data movement" in c.reason for c in view)


def test_partitioner_takes_compile_spec_positionally_and_by_keyword():
    spec = generate_neutron_compile_spec("imxrt700")
    assert NeutronPartitioner(spec).options.target == NeutronPartitioner(compile_spec=spec).options.target


def test_dequantize_shared_with_a_cpu_op_keeps_the_graph_intact():
    """Softplus has no rule: the edge dialect decomposes it into mul/exp/log1p/where ops that read
    one dequantize. ExecuTorch forbids the partitioner to edit the graph (it asserts), so that
    dequantize's users stay on the CPU, the convs around them are still delegated, and it runs."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Softplus(), nn.Conv2d(8, 4, 1))
    example = (torch.randn(1, 3, 8, 8),)
    converted, edge, partitioner, calibration = quantize_and_lower(model, example)
    assert len(delegates(edge)) == 2
    assert any(c.op == "aten.log1p.default" for c in partitioner.cpu_ops)
    edge.to_executorch()
    x = calibration[0]
    ref, got = converted(*x), run_lowered(edge, x)[0]
    assert ref.shape == got.shape and float((ref - got).abs().max()) < 0.1 * float(ref.abs().max())
