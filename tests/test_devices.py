"""neutronq.devices: the device of a model, moving a graph with every constant it reads, moving
inputs, the --device values. No GPU here: moves are checked with the "meta" device, which any
machine has."""

from __future__ import annotations

import pytest
import torch

from neutronq.devices import default_device, model_device, move_inputs, move_model, resolve_device


class _WithConstant(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        # a tensor made in forward: torch.export lifts it to a constant that .module() keeps as a
        # plain attribute, which GraphModule.to leaves behind; one made on x's device: the export
        # writes the device into the graph
        y = self.conv(x) + torch.tensor([0.5, 1.0, 1.5, 2.0]).reshape(1, 4, 1, 1)
        return y + torch.ones(y.shape[1:], device=x.device)


def _get_attr_tensors(gm) -> dict:
    found = {}
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            value = gm
            for part in node.target.split("."):
                value = getattr(value, part)
            if isinstance(value, torch.Tensor):
                found[node.target] = value
    return found


def test_model_device():
    model = torch.nn.Linear(2, 2)
    assert model_device(model) == torch.device("cpu")
    assert model_device(torch.nn.ReLU()) == torch.device("cpu")  # no tensor at all
    buffers_only = torch.nn.BatchNorm1d(2, affine=False).to("meta")
    assert model_device(buffers_only) == torch.device("meta")
    model.bias = torch.nn.Parameter(torch.zeros(2, device="meta"))
    with pytest.raises(ValueError, match="several devices"):
        model_device(model)


def test_move_model_moves_what_to_leaves_behind():
    gm = torch.export.export(_WithConstant(), (torch.randn(1, 3, 8, 8),)).module()
    loose = [t for t, v in _get_attr_tensors(gm).items()
             if not any(v is p for p in gm.parameters()) and not any(v is b for b in gm.buffers())]
    assert loose, "the export no longer keeps a plain tensor attribute: this test checks nothing"
    gm.meta["neutronq_float_weights"] = {"conv.weight": torch.ones(4, 3, 3, 3)}
    assert move_model(gm, torch.device("meta")) is gm
    assert {v.device.type for v in _get_attr_tensors(gm).values()} == {"meta"}
    assert gm.meta["neutronq_float_weights"]["conv.weight"].device.type == "meta"
    assert model_device(gm) == torch.device("meta")
    assert isinstance(gm.conv.weight, torch.nn.Parameter)  # parameters stay parameters
    devices = [n.kwargs["device"] for n in gm.graph.nodes if "device" in n.kwargs]
    assert devices and all(torch.device(d).type == "meta" for d in devices)
    assert gm(torch.randn(1, 3, 8, 8, device="meta")).device.type == "meta"  # it runs there


def test_move_inputs():
    x, y = torch.ones(2), torch.zeros(3)
    moved = move_inputs((x, [y, 3], {"k": x}), "meta")
    assert moved[0].device.type == moved[1][0].device.type == moved[2]["k"].device.type == "meta"
    assert moved[1][1] == 3
    assert move_inputs((x,), None)[0] is x
    assert move_inputs((x,), torch.device("cpu"))[0] is x  # already there: not copied


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device(None) == default_device()
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        assert default_device() == torch.device("cpu")
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")
    else:
        assert resolve_device("cuda", local_rank=0) == torch.device("cuda", 0)
        with pytest.raises(ValueError, match="visible"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
