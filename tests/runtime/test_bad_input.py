"""Errors are part of the interface: wrong inputs name the signature, foreign programs are refused."""

from __future__ import annotations

import pytest
import torch
from helpers import quantize
from pipelines import lower

from neutronq.runtime import SignatureError, UnsupportedDelegateError, load_program, run_on_host


class Add(torch.nn.Module):
    def forward(self, x, y):
        return torch.relu(x + y)


EXAMPLE = (torch.randn(1, 4, 5), torch.randn(1, 4, 5))


@pytest.fixture(scope="module")
def programs():
    torch.manual_seed(0)
    _, converted, _ = quantize(Add(), EXAMPLE)
    edge, _ = lower(converted, EXAMPLE, partitioner=False)
    pte = edge.to_executorch().buffer
    return {"edge": load_program(edge), "pte": load_program(pte)}


@pytest.mark.parametrize("form", ["edge", "pte"])
def test_wrong_input_count_names_the_signature(programs, form):
    with pytest.raises(SignatureError, match=r"takes 2 input\(s\), got 1.*float32\[1, 4, 5\], .*float32\[1, 4, 5\]\)"):
        programs[form](EXAMPLE[0])


@pytest.mark.parametrize("form", ["edge", "pte"])
def test_wrong_shape_names_the_signature(programs, form):
    with pytest.raises(SignatureError, match=r"Input 1 .* shape \[1, 4, 6\].*\[1, 4, 5\].*Expected signature: forward\("):
        programs[form](EXAMPLE[0], torch.randn(1, 4, 6))


@pytest.mark.parametrize("form", ["edge", "pte"])
def test_larger_batch_explains_the_fixed_batch(programs, form):
    with pytest.raises(SignatureError, match=r"fixed batch of 1: run samples one by one"):
        programs[form](torch.randn(3, 4, 5), torch.randn(3, 4, 5))


@pytest.mark.parametrize("form", ["edge", "pte"])
def test_wrong_dtype_names_the_signature(programs, form):
    with pytest.raises(SignatureError, match=r"Input 0 .* dtype torch.float64.*torch.float32.*Expected signature"):
        programs[form](EXAMPLE[0].double(), EXAMPLE[1])
    with pytest.raises(SignatureError, match=r"must be a tensor, got list"):
        programs[form]([0.0] * 20, EXAMPLE[1])


def _xnnpack_lowered():
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    class Linear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(8, 4)

        def forward(self, x):
            return self.fc(x)

    ep = torch.export.export(Linear().eval(), (torch.randn(1, 8),))
    return lower_float(ep, XnnpackPartitioner())


def lower_float(ep, partitioner):
    from executorch.exir import to_edge_transform_and_lower

    return to_edge_transform_and_lower(ep, partitioner=[partitioner])


def test_program_for_another_backend_is_refused(tmp_path):
    edge = _xnnpack_lowered()
    path = tmp_path / "xnnpack.pte"
    path.write_bytes(edge.to_executorch().buffer)
    for form in (edge, str(path)):
        with pytest.raises(UnsupportedDelegateError, match=r"'XnnpackBackend'.*only 'NeutronBackend'"):
            run_on_host(form, torch.randn(1, 8))


def test_not_a_program():
    with pytest.raises(ValueError, match=r"not an ExecuTorch program"):
        load_program(b"definitely not a flatbuffer")
    with pytest.raises(TypeError, match=r"takes a lowered program.*got Linear"):
        load_program(torch.nn.Linear(2, 2))
