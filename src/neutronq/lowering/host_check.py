"""Run a lowered edge program on the host: Neutron delegates through their payload's TFLite
in LiteRT's reference kernels (``run_payload``), every other node eagerly in PyTorch.

This is the lowering's own check (tests, ``benchmarks/bench_lowering.py``); the user-facing
host execution of programs and ``.pte`` files is ``neutronq.runtime``.
"""

from __future__ import annotations

import torch
from torch.export.graph_signature import InputKind

from neutronq.lowering.payload import run_payload

__all__ = ["run_edge_program", "delegated_payloads"]


def delegated_payloads(edge) -> list[bytes]:
    """The processed bytes of each delegate of an ``EdgeProgramManager`` (graph order)."""
    from executorch.exir.lowered_backend_module import LoweredBackendModule

    gm = edge.exported_program().graph_module
    return [m.processed_bytes for _, m in gm.named_children() if isinstance(m, LoweredBackendModule)]


class _Interpreter(torch.fx.Interpreter):
    def call_function(self, target, args, kwargs):
        if getattr(target, "__name__", "") == "executorch_call_delegate":
            outs = run_payload(args[0].processed_bytes, [t.contiguous().numpy() for t in args[1:]])
            return tuple(torch.from_numpy(o) for o in outs)
        return super().call_function(target, args, kwargs)


def run_edge_program(edge, inputs: tuple) -> tuple:
    """The outputs of ``edge`` (an ``EdgeProgramManager`` after ``to_edge_transform_and_lower``)."""
    ep = edge.exported_program()
    args, user = [], iter(inputs)
    for spec in ep.graph_signature.input_specs:
        if spec.kind == InputKind.USER_INPUT:
            args.append(next(user))
        elif spec.target in ep.state_dict:
            args.append(ep.state_dict[spec.target])
        else:
            args.append(ep.constants[spec.target])
    with torch.no_grad():
        out = _Interpreter(ep.graph_module).run(*args)
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)
