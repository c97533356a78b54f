"""``emulate(program)``: the lowered program as a batched ``torch.nn.Module`` that computes what
its ``.pte`` means: the Neutron delegates as TFLite's reference int8 arithmetic, emulated exactly
in PyTorch (``neutronq.runtime.emulate``), everything else with the program's own CPU ops.

The module runs the ``.pte``'s execution plan (the program a board runs), instruction by
instruction, but functionally and for any batch size: each kernel call of an out variant
(``aten::convolution.out``) runs its functional form (``aten::convolution``) on the whole batch,
and where the plan carries the exported batch size in a size argument (a view's ``[1, 1280]``) the
batch the module is called with takes its place. The delegates run as ``PayloadModule``s. A
program whose CPU part cannot run at another batch size (the batch merged into another dimension)
runs in slices of the exported batch, which the module says once.

Constants and the emulated delegates are buffers and submodules: ``.to(device)`` moves them, and
inputs are moved to the module's device. An ``EdgeProgramManager`` is serialised first (a copy:
``to_executorch`` changes the manager it is called on).
"""

from __future__ import annotations

import copy
import logging
import math
import os
from typing import Any, Optional

import torch
import torch.utils._pytree as pytree

from neutronq.backend import NEUTRON_BACKEND_ID
from neutronq.lowering.payload import PayloadError, decode_payload
from neutronq.runtime._edge import EdgeProgram
from neutronq.runtime._pte import PteProgram, read_pte, select_plan, torch_dtype
from neutronq.runtime._signature import InputSpec, Signature, SignatureError
from neutronq.runtime.emulate import EmulationError, emulate_payload

__all__ = ["EmulatedProgram", "emulate"]

log = logging.getLogger(__name__)

# ops whose int-list argument 1 is a size that starts with the batch
_SIZED = {"aten::view_copy", "aten::_unsafe_view", "aten::expand_copy", "aten::reshape", "executorch_prim::et_view"}
_FACTORIES = {"aten::full", "aten::zeros", "aten::ones", "aten::empty", "aten::empty_strided"}


def _pte_bytes(program) -> bytes:
    from executorch.exir import EdgeProgramManager, ExecutorchProgramManager

    if isinstance(program, (EdgeProgram, PteProgram)):  # load_program's result: what it was made from
        program = program.source
    if isinstance(program, EdgeProgramManager):
        import executorch.kernels.quantized  # noqa: F401  out variants of quantize/dequantize for to_executorch

        return copy.deepcopy(program).to_executorch().buffer
    if isinstance(program, ExecutorchProgramManager):
        return program.buffer
    if isinstance(program, (str, os.PathLike)):
        with open(program, "rb") as f:
            return f.read()
    if isinstance(program, (bytes, bytearray, memoryview)):
        return bytes(program)
    raise TypeError("emulate takes a lowered program: the EdgeProgramManager of to_edge_transform_and_lower, its "
                    ".to_executorch() result, a .pte path or bytes, or load_program's result; got "
                    f"{type(program).__name__}.")


def _functional(name: str, overload: str):
    """(op to call, names of its out arguments) for a plan kernel: the functional form of an out
    variant, or the op itself."""
    import executorch.kernels.quantized  # noqa: F401  registers quantized_decomposed out variants
    from executorch.exir.operator.convert import to_out_variant

    namespace, _, op_name = name.partition("::")
    try:
        packet = getattr(getattr(torch.ops, namespace), op_name)
        op = getattr(packet, overload or "default")
    except (AttributeError, RuntimeError) as e:
        raise EmulationError(f"the program's CPU op {name}.{overload or 'default'} is not known to PyTorch here "
                             "(no torch.ops kernel registered): it cannot be emulated") from e
    outs = [a.name for a in op._schema.arguments if a.alias_info is not None and a.alias_info.is_write]
    if not outs:
        return op, []
    for other in packet.overloads():
        candidate = getattr(packet, other)
        if candidate is op:
            continue
        try:
            if to_out_variant(candidate)[0] is op:
                return candidate, outs
        except Exception:  # noqa: BLE001 - not a functional overload with this out variant
            continue
    raise EmulationError(f"the program's CPU op {name}.{overload} has no functional form to run batched")


class _Template:
    __slots__ = ("kind", "value", "items", "optional", "sizes", "dtype")


class EmulatedProgram(torch.nn.Module):
    """One method of a lowered program as a batched module (see the module doc). Float inputs and
    outputs, as the exported model takes and returns them, with any batch size."""

    def __init__(self, program, method: Optional[str] = None, compile: bool = False):
        super().__init__()
        pte = read_pte(_pte_bytes(program))
        method, plan = select_plan(pte.program, method)
        self.plan = plan
        if len(plan.chains) != 1:
            raise EmulationError(f"method {method!r} has {len(plan.chains)} chains; one is supported")
        self.method = method
        self.delegates = torch.nn.ModuleList()
        for index, delegate in enumerate(plan.delegates):
            where = f"delegate {index} of method {method!r}"
            if delegate.id != NEUTRON_BACKEND_ID:
                raise EmulationError(f"{where} is for backend {delegate.id!r}; only Neutron delegates are emulated")
            data = pte.program.backend_delegate_data[delegate.processed.index].data
            try:
                self.delegates.append(emulate_payload(decode_payload(data), compile=compile))
            except (EmulationError, PayloadError) as e:
                raise EmulationError(f"{where}: {e}") from e
        self.kernels = [_functional(op.name, op.overload) for op in plan.operators]
        self.names = [op.name for op in plan.operators]
        self._templates, constants = self._read_values(plan, pte.program.constant_buffer)
        for index, value in constants.items():
            self.register_buffer(f"constant_{index}", value, persistent=False)
        self._constants = sorted(constants)
        inputs = [self._templates[i] for i in plan.inputs]
        self.batch = next((t.sizes[0] for t in inputs if t.kind == "tensor" and t.sizes), None)
        self._out_spec = pytree.treespec_loads(plan.container_meta_type.encoded_out_str)
        self.signature = Signature(method, tuple(
            InputSpec(f"input_{k}", t.dtype, tuple(t.sizes)) if t.kind == "tensor"
            else InputSpec(f"input_{k}", kind=t.kind) for k, t in enumerate(inputs)))
        self._sliced_warned = False
        outputs = [self._templates[i] for i in plan.outputs]
        # every tensor output carries the batch in dim 0 (a model that reduces over the batch, a
        # mean of everything, returns one value whatever the batch: it runs only at its own batch)
        # ... and every tensor input does (a 2-D matmul of two activations has none)
        self.batched = self.batch is not None and all(
            t.kind != "tensor" or (t.sizes and t.sizes[0] == self.batch) for t in (*inputs, *outputs))

    @staticmethod
    def _read_values(plan, constant_buffer):
        from executorch.exir import schema as S

        templates, constants = [], {}
        for index, ev in enumerate(plan.values):
            v, t = ev.val, _Template()
            t.kind, t.value, t.items, t.optional, t.sizes, t.dtype = "value", None, None, False, None, None
            if isinstance(v, S.Tensor):
                t.kind, t.sizes, t.dtype = "tensor", list(v.sizes), torch_dtype(v.scalar_type)
                if v.allocation_info is None and v.data_buffer_idx > 0:
                    numel = 1
                    for s in t.sizes:
                        numel *= s
                    nbytes = numel * torch.empty((), dtype=t.dtype).element_size()
                    raw = bytearray(constant_buffer[v.data_buffer_idx].storage[:nbytes])
                    flat = torch.frombuffer(raw, dtype=torch.uint8) if nbytes else torch.empty(0, dtype=torch.uint8)
                    constants[index] = flat.view(t.dtype).reshape(t.sizes).clone()
            elif isinstance(v, (S.IntList, S.TensorList)):
                t.kind, t.items = "list", list(v.items)
            elif isinstance(v, S.OptionalTensorList):
                t.kind, t.items, t.optional = "list", list(v.items), True
            elif isinstance(v, (S.DoubleList, S.BoolList)):
                t.value = list(v.items)
            elif isinstance(v, S.Int):
                t.value = v.int_val
            elif isinstance(v, S.Bool):
                t.value = v.bool_val
            elif isinstance(v, S.Double):
                t.value = float(v.double_val)
            elif isinstance(v, S.String):
                t.value = v.string_val
            elif isinstance(v, S.Null):
                t.value = None
            else:
                raise EmulationError(f"value type {type(v).__name__} of the program is not supported")
            templates.append(t)
        return templates, constants

    # ------------------------------------------------------------------------------------------
    def _device(self) -> torch.device:
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    def forward(self, *inputs):
        self._check(inputs)
        device = self._device()
        inputs = tuple(x.to(device) if isinstance(x, torch.Tensor) else x for x in inputs)
        n = next((x.shape[0] for x in inputs if isinstance(x, torch.Tensor) and x.dim()), None)
        if self.batch is None or n is None or n == self.batch:
            return self._run(inputs, n)
        if not self.batched:
            raise ValueError(f"The program's inputs and outputs do not all carry the batch in dim 0 (a reduction over "
                             "it, a 2-D matmul of two inputs), so it runs only at its exported shapes, batch "
                             f"{self.batch}; got a batch of {n}.")
        try:
            return self._run(inputs, n)
        except (RuntimeError, ValueError) as batched_error:
            if n % self.batch:
                raise ValueError(f"The program's CPU part runs only at its exported batch size {self.batch} "
                                 f"({batched_error}); a batch of {n} is not a multiple of it.") from batched_error
            if not self._sliced_warned:
                log.warning("the program's CPU part fixes the batch size at %d (%s): emulating it in slices",
                            self.batch, str(batched_error).splitlines()[0])
                self._sliced_warned = True
            outs = [self._run(tuple(x[i : i + self.batch] if isinstance(x, torch.Tensor) else x for x in inputs),
                              self.batch) for i in range(0, n, self.batch)]
            return pytree.tree_map(lambda *parts: torch.cat(parts), *outs)

    def _check(self, inputs: tuple) -> None:
        """The inputs the program was exported with, but for the batch size."""
        specs = self.signature.inputs
        if len(inputs) != len(specs):
            raise SignatureError(f"The program takes {len(specs)} inputs ({self.signature}); got {len(inputs)}.")
        for k, (x, spec) in enumerate(zip(inputs, specs)):
            if spec.shape is None:
                continue
            if not isinstance(x, torch.Tensor) or x.dim() != len(spec.shape) or tuple(x.shape[1:]) != spec.shape[1:]:
                got = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise SignatureError(f"Input {k} is {got}; the program takes {spec} (any batch size in dim 0).")

    def _run(self, inputs: tuple, n: Optional[int]):
        from executorch.exir import schema as S

        values: list[Any] = []
        for index, t in enumerate(self._templates):
            values.append(t.value if t.kind == "value" else (t if t.kind == "list" else None))
        for index in self._constants:
            values[index] = getattr(self, f"constant_{index}")
        for index, x in zip(self.plan.inputs, inputs):
            values[index] = x

        def resolve(index):
            v = values[index]
            if isinstance(v, _Template):  # a list of value indices
                return [None if (v.optional and i == -1) else resolve(i) for i in v.items]
            return v

        device = self._device()
        instructions = self.plan.chains[0].instructions
        pc = 0
        while pc < len(instructions):
            ins = instructions[pc].instr_args
            pc += 1
            if isinstance(ins, S.KernelCall):
                op, outs = self.kernels[ins.op_index]
                name = self.names[ins.op_index]
                schema_args = op._schema.arguments
                args = [resolve(i) for i in ins.args]
                given = args[: len(args) - len(outs)] if outs else args[: len(schema_args)]
                if name in _SIZED or name in _FACTORIES:
                    given = self._rebatch(name, given, n)
                positional, keyword = [], {}
                for arg, value in zip(schema_args, given):
                    if arg.kwarg_only:
                        if arg.name == "device":
                            value = device
                        keyword[arg.name] = value
                    else:
                        positional.append(value)
                if name == "executorch_prim::et_view":
                    result = positional[0].view(positional[1])
                else:
                    result = op(*positional, **keyword)
                targets = ins.args[len(args) - len(outs):] if outs else ins.args[len(schema_args):]
                results = result if isinstance(result, (tuple, list)) and len(targets) > 1 else (result,)
                for index, value in zip(targets, results):
                    values[index] = value
            elif isinstance(ins, S.DelegateCall):
                flat = []
                for i in ins.args:
                    v = resolve(i)
                    flat.extend(v if isinstance(v, list) else [v])
                delegate = self.delegates[ins.delegate_index]
                n_in = len(delegate.input_channels_last)
                outputs = delegate(*flat[:n_in])
                outputs = outputs if isinstance(outputs, tuple) else (outputs,)
                out_indices = []
                for i in ins.args:
                    t = self._templates[i]
                    out_indices.extend(t.items if t.kind == "list" else [i])
                for index, value in zip(out_indices[n_in:], outputs):
                    values[index] = self._shaped(value, index, n)
            elif isinstance(ins, S.MoveCall):
                values[ins.move_to] = values[ins.move_from]
            elif isinstance(ins, S.JumpFalseCall):
                if not bool(values[ins.cond_value_index]):
                    pc = ins.destination_instruction
            elif isinstance(ins, S.FreeCall):
                pass
            else:
                raise EmulationError(f"instruction {type(ins).__name__} is not supported")
        outputs = [resolve(i) for i in self.plan.outputs]
        return pytree.tree_unflatten(outputs, self._out_spec)

    def _shaped(self, value, index: int, n: Optional[int]):
        """A delegate output in the shape the plan gives it (the batch ``n`` in place of the
        exported one): a scalar output comes out of the TFLite model with its batch dim."""
        t = self._templates[index]
        if t.kind != "tensor" or not isinstance(value, torch.Tensor):
            return value
        sizes = list(t.sizes)
        if n is not None and self.batch is not None and n != self.batch and sizes and sizes[0] == self.batch:
            sizes[0] = n
        if list(value.shape) != sizes and value.numel() == math.prod(sizes):
            value = value.reshape(sizes)
        return value

    def _rebatch(self, name: str, args: list, n: Optional[int]) -> list:
        """The batch ``n`` in place of the exported batch at the head of a size argument."""
        if n is None or self.batch is None or n == self.batch:
            return args
        position = 0 if name in _FACTORIES else 1
        if len(args) > position and isinstance(args[position], list) and args[position] \
                and args[position][0] == self.batch:
            if position == 1 and not (isinstance(args[0], torch.Tensor) and args[0].dim() and args[0].shape[0] == n):
                return args
            args = list(args)
            args[position] = [n, *args[position][1:]]
        return args


def emulate(program, method: Optional[str] = None, compile: bool = False) -> EmulatedProgram:
    """The lowered ``program`` (an ``EdgeProgramManager``, an ``ExecutorchProgramManager``, or a
    ``.pte`` path / bytes, as ``run_on_host`` takes) as a batched ``torch.nn.Module`` computing
    TFLite's reference int8 arithmetic for its Neutron delegates, exactly, and its CPU ops as the
    program names them. ``.to(device)`` runs it there (CUDA where there is one). An op the
    emulation does not know raises ``EmulationError`` naming it; ``run_on_host`` (LiteRT) stays
    the oracle."""
    return EmulatedProgram(program, method, compile=compile)
