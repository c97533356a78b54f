"""Execute an in-memory lowered program (``EdgeProgramManager``) on the host.

A ``torch.fx.Interpreter`` walks the edge graph (as lowered, or as ``to_executorch()`` leaves it:
that call rewrites the manager's graph in place, with ``alloc`` nodes and out variants). Each ATen / quantized op runs through its out
variant (the kernel the ``.pte`` calls, so both paths give identical numbers); each
``executorch_call_delegate`` runs its lowered module's payload through ``_delegates``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.fx
import torch.utils._pytree as pytree
from torch.export.graph_signature import InputKind, OutputKind

from neutronq.runtime._delegates import load_delegate
from neutronq.runtime._signature import InputSpec, Signature

__all__ = ["EdgeProgram"]


def _out_variant(target):
    """(out-variant OpOverload, out argument names) of an edge / ATen op, or None."""
    from executorch.exir.operator.convert import to_out_variant

    op = getattr(target, "_op", target)  # EdgeOpOverload wraps the ATen OpOverload
    if not isinstance(op, torch._ops.OpOverload):
        return None
    try:
        return to_out_variant(op)
    except Exception:
        return None


class _Interpreter(torch.fx.Interpreter):
    def __init__(self, program: "EdgeProgram"):
        super().__init__(program.graph_module)
        self.program = program

    def run_node(self, n):
        self.node = n
        return super().run_node(n)

    def call_function(self, target, args, kwargs):
        program = self.program
        if target is program.call_delegate:
            lowered, *inputs = args
            return program.delegate_for(lowered)(inputs)
        node = self.node
        out = program.out_variants.get(node)
        # an edge program that ``to_executorch()`` has already rewritten calls out variants itself
        if out is not None and not any(name in kwargs for name in out[1]):
            op, names = out
            val = node.meta.get("val")
            vals = val if isinstance(val, (tuple, list)) else (val,)
            if len(names) == len(vals) and all(isinstance(v, torch.Tensor) for v in vals):
                buffers = [torch.empty_strided(v.shape, v.stride(), dtype=v.dtype) for v in vals]
                # a factory's dtype / layout / device / pin_memory describe the planned buffer,
                # which the out variant writes into: they are not arguments of it
                accepted = {a.name for a in op._schema.arguments}
                kwargs = {k: v for k, v in kwargs.items() if k in accepted}
                op(*args, **kwargs, **dict(zip(names, buffers)))
                return buffers[0] if len(buffers) == 1 and not isinstance(val, (tuple, list)) else tuple(buffers)
        return super().call_function(target, args, kwargs)


class EdgeProgram:
    """One method of an ``EdgeProgramManager``, ready to run on the host."""

    def __init__(self, manager, method: Optional[str] = None):
        import executorch.kernels.quantized  # noqa: F401  registers quantized_decomposed out variants
        from executorch.exir.delegate import executorch_call_delegate

        methods = list(manager.methods)
        if method is None:
            method = "forward" if "forward" in methods else methods[0]
        if method not in methods:
            raise ValueError(f"The program has no method {method!r}; it has {sorted(methods)}.")
        self.method = method
        self.source = manager  # what emulate() reads
        ep = self.exported_program = manager.exported_program(method)
        self.graph_module = ep.graph_module
        self.call_delegate = executorch_call_delegate
        self._delegates: dict[int, object] = {}
        self.delegate_ids = []
        lowered_index = 0
        for node in self.graph_module.graph.nodes:
            if node.op == "call_function" and node.target is executorch_call_delegate:
                lowered = getattr(self.graph_module, node.args[0].target)
                where = f"Delegate {lowered_index} of method {method!r} ({node.name})"
                self._delegates[id(lowered)] = load_delegate(lowered.backend_id, lowered.processed_bytes, where)
                self.delegate_ids.append(lowered.backend_id)
                lowered_index += 1
        self.out_variants = {
            node: _out_variant(node.target)
            for node in self.graph_module.graph.nodes
            if node.op == "call_function" and node.target is not executorch_call_delegate
        }
        self._placeholders = [n for n in self.graph_module.graph.nodes if n.op == "placeholder"]
        specs = ep.graph_signature.input_specs
        self._user_positions = [i for i, s in enumerate(specs) if s.kind == InputKind.USER_INPUT]
        self._fixed = {}
        for i, s in enumerate(specs):
            if s.kind in (InputKind.PARAMETER, InputKind.BUFFER):
                self._fixed[i] = ep.state_dict[s.target] if s.target in ep.state_dict else ep.constants[s.target]
            elif s.kind in (InputKind.CONSTANT_TENSOR, InputKind.CUSTOM_OBJ):
                self._fixed[i] = ep.constants[s.target]
        self._user_outputs = [i for i, s in enumerate(ep.graph_signature.output_specs) if s.kind == OutputKind.USER_OUTPUT]
        self._out_spec = ep.call_spec.out_spec
        self.signature = Signature(method, tuple(self._input_spec(self._placeholders[i]) for i in self._user_positions))

    @staticmethod
    def _input_spec(node) -> InputSpec:
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor):
            return InputSpec(node.name, val.dtype, tuple(int(s) for s in val.shape))
        return InputSpec(node.name, kind=type(val).__name__)

    def delegate_for(self, lowered):
        return self._delegates[id(lowered)]

    @property
    def delegates(self) -> list:
        """The program's Neutron delegates, in graph order."""
        return list(self._delegates.values())

    def __call__(self, *inputs):
        self.signature.check(inputs)
        args = [None] * len(self._placeholders)
        for position, value in zip(self._user_positions, inputs):
            args[position] = value
        for position, value in self._fixed.items():
            args[position] = value
        with torch.no_grad():
            flat = _Interpreter(self).run(*args, enable_io_processing=False)
        flat = list(flat) if isinstance(flat, (tuple, list)) else [flat]
        outputs = [flat[i] for i in self._user_outputs]
        if self._out_spec is None:
            return outputs[0] if len(outputs) == 1 else tuple(outputs)
        return pytree.tree_unflatten(outputs, self._out_spec)
