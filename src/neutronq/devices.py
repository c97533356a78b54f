"""Where a model and its inputs live.

Every step of the flow (prepare and calibration, QAT training, bias correction, AdaRound,
distillation, the error budget) runs on the device of the model it is given: move the exported
or prepared ``GraphModule`` with ``move_model(gm, device)`` (or ``gm.to(device)``) and the steps
move the inputs there themselves. Tensors the steps create take the model's device; the random
draws that order samples and pick rows stay on the CPU (``SAMPLING_DEVICE``), so a seed gives the
same draws on every device.

  * ``model_device(model)``: the device of a model's parameters (its buffers when it has none);
  * ``move_model(gm, device)``: ``gm.to(device)``, plus what ``.to`` leaves behind: the constants
    ``torch.export``'s ``.module()`` keeps as plain attributes, the devices written into the graph
    (``torch.zeros(..., device=x.device)`` in a forward is exported with the export's device), and
    the float weights the PTQ steps keep in ``gm.meta``;
  * ``move_inputs(inputs, device)``: the tensors of an input tuple (or any nest of them) moved;
  * ``default_device()``: CUDA when present, else the CPU;
  * ``resolve_device(spec)``: a ``--device`` value ("cuda", "cuda:1", "cpu", None) as a device.
"""

from __future__ import annotations

import operator
from typing import Optional, Union

import torch
from torch.utils._pytree import tree_map

__all__ = [
    "SAMPLING_DEVICE",
    "model_device",
    "move_model",
    "move_inputs",
    "default_device",
    "resolve_device",
]

# random draws (sample order, picked rows, augmentation) are made here whatever the model's device
SAMPLING_DEVICE = torch.device("cpu")

# gm.meta entries holding tensors keyed by attribute (the PTQ steps' float weights and biases)
_META_PREFIX = "neutronq_"


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of ``model``'s parameters (of its buffers when it has none; the CPU when it
    holds no tensor). A model spread over several devices is refused: the steps run it whole on
    one."""
    devices = {p.device for p in model.parameters()} or {b.device for b in model.buffers()}
    if len(devices) > 1:
        names = ", ".join(sorted(str(d) for d in devices))
        raise ValueError(f"The model's tensors are on several devices ({names}); move it to one with "
                         "neutronq.devices.move_model(model, device) (or model.to(device)).")
    return devices.pop() if devices else torch.device("cpu")


def move_model(gm: torch.nn.Module, device: Union[str, torch.device]) -> torch.nn.Module:
    """``gm`` with everything it reads on ``device``, in place; returns it. Beyond ``gm.to``:
    tensors a ``get_attr`` node reads that are neither parameters nor buffers (the lifted
    constants of ``ExportedProgram.module()``), the ``device`` arguments of the graphs' calls
    (factories and ``to`` traced on the export's device; as ``torch.export.passes.move_to_device_pass``
    does for an ``ExportedProgram``), and the tensors of ``gm.meta``'s neutronq entries (the float
    weights and biases the PTQ steps keep)."""
    device = torch.device(device)
    gm.to(device)
    for module in gm.modules():
        if isinstance(getattr(module, "graph", None), torch.fx.Graph) and _retarget_device_arguments(module.graph, device):
            module.recompile()
    graph = getattr(gm, "graph", None)
    if graph is not None:
        for node in graph.nodes:
            if node.op != "get_attr":
                continue
            *path, name = str(node.target).split(".")
            try:
                owner = operator.attrgetter(".".join(path))(gm) if path else gm
                value = getattr(owner, name)
            except AttributeError:
                continue
            if isinstance(value, torch.Tensor) and not isinstance(value, torch.nn.Parameter) \
                    and name not in getattr(owner, "_buffers", {}) and value.device != device:
                setattr(owner, name, value.to(device))
    meta = getattr(gm, "meta", None)
    if isinstance(meta, dict):
        for key, entry in meta.items():
            if isinstance(key, str) and key.startswith(_META_PREFIX) and isinstance(entry, dict):
                for target, value in entry.items():
                    if isinstance(value, torch.Tensor):
                        entry[target] = value.to(device)
    return gm


def _retarget_device_arguments(graph: torch.fx.Graph, device: torch.device) -> bool:
    """Every ``device=`` of a call, and the device of ``aten.to.device``, set to ``device``;
    whether anything changed."""
    changed = False
    for node in graph.nodes:
        if node.op != "call_function":
            continue
        if isinstance(node.kwargs.get("device"), (torch.device, str)) and torch.device(node.kwargs["device"]) != device:
            node.kwargs = {**node.kwargs, "device": device}
            changed = True
        if node.target is torch.ops.aten.to.device and len(node.args) > 1 and node.args[1] != device:
            node.args = (node.args[0], device, *node.args[2:])
            changed = True
    return changed


def move_inputs(inputs, device: Union[str, torch.device, None]):
    """``inputs`` (a tensor, or a tuple / list / dict nest of them) with every tensor on
    ``device``; ``device=None`` leaves them where they are."""
    if device is None:
        return inputs
    device = torch.device(device)

    def move(x):
        return x.to(device) if isinstance(x, torch.Tensor) and x.device != device else x

    return tree_map(move, inputs)


def default_device() -> torch.device:
    """CUDA (the current one) when a GPU is present, else the CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def resolve_device(spec: Union[str, torch.device, None], local_rank: Optional[int] = None) -> torch.device:
    """A device from a ``--device`` value: None gives ``default_device()``; a bare "cuda" gives
    GPU ``local_rank`` (one GPU per process under torchrun) or the current one. Unknown names
    and GPUs that are not there raise ``ValueError`` with what is available."""
    if spec is None or (isinstance(spec, str) and spec.strip() == ""):
        device = default_device()
    else:
        try:
            device = torch.device(spec)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"unknown device {spec!r} ({e}); use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r} was asked for but this PyTorch sees no CUDA GPU "
                             f"(torch {torch.__version__}); use --device cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank if local_rank is not None else torch.cuda.current_device())
        if device.index >= torch.cuda.device_count():
            raise ValueError(f"device {device} was asked for but only {torch.cuda.device_count()} CUDA "
                             "GPU(s) are visible")
    return device
