"""The .pte plan executor against executorch.runtime, and against the in-memory program."""

from __future__ import annotations

import torch
from helpers import quantize
from pipelines import lower

from neutronq.runtime import EdgeProgram, PteProgram, load_program, run_on_host, simulate


class ConvLinear(torch.nn.Module):
    """conv + relu, flatten (a view the memory planner turns into shared memory), linear, pool."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 3)
        self.pool = torch.nn.MaxPool2d(2)
        self.fc = torch.nn.Linear(6 * 3 * 3, 5)

    def forward(self, x):
        y = self.pool(torch.relu(self.conv(x)))
        return self.fc(y.flatten(1)), torch.cat([y, y], dim=1)


EXAMPLE = (torch.randn(1, 3, 8, 8),)


def _lowered():
    _, converted, calibration = quantize(ConvLinear(), EXAMPLE)
    return converted, calibration, lower(converted, EXAMPLE, partitioner=False)[0]


def test_pte_executor_matches_executorch_runtime():
    from executorch.runtime import Runtime

    converted, calibration, edge = _lowered()
    buffer = edge.to_executorch().buffer
    ours = PteProgram(buffer)
    method = Runtime.get().load_program(buffer).load_method("forward")
    for (x,) in calibration:
        expected = method.execute([x])
        got = ours(x)
        assert len(got) == len(expected) == 2
        for g, e in zip(got, expected):
            assert torch.equal(g, e)
        # and the program does compute the quantized model (not, say, zeros)
        for g, q in zip(got, converted(x)):
            assert torch.equal(g, q)
            assert g.abs().sum() > 0


def test_edge_program_and_pte_on_disk_agree(tmp_path):
    _, calibration, edge = _lowered()
    in_memory = load_program(edge)
    assert isinstance(in_memory, EdgeProgram)
    before = [in_memory(x) for (x,) in calibration]  # before to_executorch rewrites the graph
    path = tmp_path / "model.pte"
    with open(path, "wb") as f:
        edge.to_executorch().write_to_file(f)
    from_disk = load_program(str(path))
    assert isinstance(from_disk, PteProgram)
    for (x,), first in zip(calibration, before):
        for a, b, c in zip(first, in_memory(x), from_disk(x)):
            assert torch.equal(a, b) and torch.equal(a, c)


def test_every_program_form_runs_through_simulate(tmp_path):
    _, calibration, edge = _lowered()
    x = calibration[0][0]
    reference = simulate(edge, x)
    program = edge.to_executorch()
    path = tmp_path / "m.pte"
    path.write_bytes(program.buffer)
    for form in (program, program.buffer, path, str(path)):
        out = run_on_host(form, x)
        assert isinstance(out, tuple) and all(torch.equal(a, b) for a, b in zip(out, reference))


def test_signature_is_read_from_the_plan():
    _, _, edge = _lowered()
    assert str(load_program(edge).signature) == "forward(x: float32[1, 3, 8, 8])"
    assert str(load_program(edge.to_executorch()).signature) == "forward(input_0: float32[1, 3, 8, 8])"
