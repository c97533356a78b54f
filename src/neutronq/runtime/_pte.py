"""Execute a ``.pte`` on the host: executorch's deserializer reads it, this module runs its plan.

The plan is what ExecuTorch's runtime executes on a board: a list of values (tensors with their
memory-planned location, ints, lists, ...) and a chain of instructions. Tensors live where the
memory plan puts them (one byte arena per planned buffer), so a ``view`` the emitter turned into
a shared location behaves as on the board. Kernel calls go to the ``torch.ops`` operator of the
same name and overload (``aten::convolution.out``, ``quantized_decomposed::quantize_per_tensor.out``
from ``executorch.kernels.quantized``); delegate calls go to ``_delegates``.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Union

import torch
import torch.utils._pytree as pytree

from neutronq.lowering.payload import PayloadError
from neutronq.runtime._delegates import UnsupportedDelegateError, load_delegate
from neutronq.runtime._signature import InputSpec, Signature
from neutronq.runtime._validate import ProgramError, validate_plan
from neutronq.runtime._validate import torch_dtype as _host_dtype

__all__ = ["PteProgram", "ProgramError", "read_pte", "select_plan", "torch_dtype"]


def read_pte(source: Union[str, os.PathLike, bytes, bytearray, memoryview]):
    """The deserialized ``PTEFile`` (executorch's own reader) of a path or of ``.pte`` bytes;
    ``ProgramError`` when the bytes are not a readable program."""
    from executorch.exir._serialize._program import deserialize_pte_binary

    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            data = f.read()
    else:
        data = bytes(source)
    if len(data) < 8 or data[4:6] != b"ET":
        raise ProgramError(f"not an ExecuTorch program: {len(data)} bytes without the 'ET..' identifier "
                           "at byte 4")
    try:
        return deserialize_pte_binary(data)
    except Exception as e:  # executorch raises several types for malformed input
        raise ProgramError(f"the program does not decode ({type(e).__name__}: {e})") from e


def torch_dtype(scalar_type) -> torch.dtype:
    dtype = _host_dtype(scalar_type)
    if dtype is None:
        raise NotImplementedError(f"Tensor dtype {scalar_type!r} is not supported on the host.")
    return dtype


def _strides(sizes: list[int], dim_order: list[int]) -> list[int]:
    """Strides of a dense tensor whose dimensions are laid out in ``dim_order`` (outermost first)."""
    order = dim_order or list(range(len(sizes)))
    strides = [0] * len(sizes)
    step = 1
    for dim in reversed(order):
        strides[dim] = step
        step *= max(sizes[dim], 1)
    return strides



def select_plan(program, method: Optional[str] = None) -> tuple:
    """(method name, execution plan) of a deserialized program: ``method``, or ``forward``, or
    the first method. Shared by the host run and the emulation."""
    plans = {p.name: p for p in program.execution_plan}
    if not plans:
        raise ProgramError("the program has no method")
    if method is None:
        method = "forward" if "forward" in plans else program.execution_plan[0].name
    if method not in plans:
        raise ValueError(f"The program has no method {method!r}; it has {sorted(plans)}.")
    return method, plans[method]

class _List:
    """An IntList / TensorList / OptionalTensorList: value indices, resolved when a kernel runs."""

    __slots__ = ("items", "optional")

    def __init__(self, items: list[int], optional: bool = False):
        self.items, self.optional = items, optional


def _resolve(values: list, index: int) -> Any:
    value = values[index]
    if isinstance(value, _List):
        return [None if (value.optional and i == -1) else values[i] for i in value.items]
    return value


def _find_op(name: str, overload: str) -> torch._ops.OpOverload:
    namespace, _, op_name = name.partition("::")
    try:
        packet = getattr(getattr(torch.ops, namespace), op_name)
        return getattr(packet, overload or "default")
    except (AttributeError, RuntimeError) as e:
        hint = ""
        if namespace == "quantized_decomposed":
            hint = " (import executorch.kernels.quantized registers it)"
        raise NotImplementedError(
            f"No host kernel for the program's operator {name}.{overload or 'default'}{hint}."
        ) from e


class _Kernel:
    """A plan operator bound to its ``torch.ops`` overload; called with the instruction's values.

    ExecuTorch passes every schema argument positionally, the out tensors last. Out variants run
    with ``out=`` the planned tensor, so results land in planned memory; scalar-returning ops
    (``executorch_prim::``, ``aten::sym_size``) store their result in the output value.
    """

    def __init__(self, name: str, overload: str):
        self.label = f"{name}.{overload or 'default'}"
        if name == "executorch_prim::et_view":
            self.op = None
            return
        self.op = _find_op(name, overload)
        schema = self.op._schema
        self.arguments = schema.arguments
        self.num_returns = len(schema.returns)
        self.outs = [a.name for a in schema.arguments if a.alias_info is not None and a.alias_info.is_write]

    def __call__(self, values: list, args: list[int]) -> None:
        if self.op is None:  # et_view(self, size) -> out: the output aliases the input
            values[args[2]] = values[args[0]].view(_resolve(values, args[1]))
            return
        positional, keyword = [], {}
        for arg, index in zip(self.arguments, args):
            value = _resolve(values, index)
            if arg.kwarg_only:
                keyword[arg.name] = value
            else:
                positional.append(value)
        if self.outs:
            self.op(*positional, **keyword)
            return
        # functional / scalar ops: the value(s) after the schema arguments receive the result
        result = self.op(*positional, **keyword)
        results = result if isinstance(result, (tuple, list)) and self.num_returns > 1 else (result,)
        for index, value in zip(args[len(self.arguments):], results):
            if isinstance(values[index], torch.Tensor) and isinstance(value, torch.Tensor):
                values[index].copy_(value)  # a planned output tensor keeps its memory
            else:
                values[index] = value  # an Int / Double / Bool value (symbolic sizes)


class _TensorValue:
    """How to materialise one planned tensor: constant data, a slice of an arena, or fresh memory."""

    __slots__ = ("dtype", "sizes", "strides", "nbytes", "memory_id", "offset", "constant")

    def __init__(self, tensor, constant_buffer):
        self.dtype = torch_dtype(tensor.scalar_type)
        self.sizes = list(tensor.sizes)
        self.strides = _strides(self.sizes, list(tensor.dim_order))
        numel = 1
        for s in self.sizes:
            numel *= s
        self.nbytes = numel * torch.empty((), dtype=self.dtype).element_size()
        self.constant = None
        self.memory_id = self.offset = None
        info = tensor.extra_tensor_info
        if info is not None and int(info.location) != 0:
            raise NotImplementedError(
                f"Tensor {info.fully_qualified_name!r} is stored outside the .pte (external "
                "data); neutronq's host runner reads only self-contained .pte files."
            )
        if tensor.allocation_info is not None:
            self.memory_id = tensor.allocation_info.memory_id
            self.offset = tensor.allocation_info.memory_offset + tensor.storage_offset
        elif tensor.data_buffer_idx > 0:
            raw = constant_buffer[tensor.data_buffer_idx].storage[: self.nbytes]
            flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if self.nbytes else torch.empty(0, dtype=torch.uint8)
            self.constant = flat.view(self.dtype).as_strided(self.sizes, self.strides)

    def make(self, arenas: dict[int, torch.Tensor]) -> torch.Tensor:
        if self.constant is not None:
            return self.constant
        if self.memory_id is None:
            return torch.empty_strided(self.sizes, self.strides, dtype=self.dtype)
        chunk = arenas[self.memory_id][self.offset : self.offset + self.nbytes]
        return chunk.view(self.dtype).as_strided(self.sizes, self.strides)


class PteProgram:
    """One method of a ``.pte``, ready to run on the host (``PteProgram(path)(*inputs)``)."""

    def __init__(self, source, method: Optional[str] = None):
        import executorch.kernels.quantized  # noqa: F401  registers quantized_decomposed out variants

        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as f:
                source = f.read()
        self.source = bytes(source)  # the .pte bytes (what emulate() reads)
        pte = read_pte(self.source)
        try:
            self._load(pte.program, method)
        except (ProgramError, NotImplementedError, PayloadError, UnsupportedDelegateError):
            raise
        except Exception as e:  # anything the checks did not foresee in a damaged file
            raise ProgramError(f"the program cannot be prepared ({type(e).__name__}: {e})") from e

    def _load(self, program, method: Optional[str]) -> None:
        method, plan = select_plan(program, method)
        self.plan = plan
        if len(plan.chains) != 1:
            raise NotImplementedError(f"Method {method!r} has {len(plan.chains)} chains; only one is supported.")
        self.method = method
        self.delegate_ids = [d.id for d in plan.delegates]
        self._delegates = []
        for index, delegate in enumerate(plan.delegates):
            where = f"Delegate {index} of method {method!r}"
            if int(delegate.processed.location) != 0:
                raise ProgramError(f"{where}: its payload is not inside the program (data location "
                                   f"{int(delegate.processed.location)})")
            if not 0 <= delegate.processed.index < len(program.backend_delegate_data):
                raise ProgramError(f"{where}: its payload is number {delegate.processed.index}; the program "
                                   f"holds {len(program.backend_delegate_data)}")
            processed = program.backend_delegate_data[delegate.processed.index].data
            self._delegates.append(load_delegate(delegate.id, processed, where))
        self._kernels = [_Kernel(op.name, op.overload) for op in plan.operators]
        validate_plan(plan, program, self._kernels, self._delegates)
        self._template = self._value_templates(plan, program.constant_buffer)
        self._arena_sizes = {i: size for i, size in enumerate(plan.non_const_buffer_sizes) if i > 0}
        self._out_spec = pytree.treespec_loads(plan.container_meta_type.encoded_out_str)
        self.signature = Signature(method, tuple(self._input_spec(i, v) for i, v in enumerate(plan.inputs)))

    @property
    def delegates(self) -> list:
        """The program's Neutron delegates, in the plan's order."""
        return list(self._delegates)

    # ------------------------------------------------------------------------------------------
    @staticmethod
    def _value_templates(plan, constant_buffer) -> list:
        from executorch.exir import schema as S

        out = []
        for ev in plan.values:
            v = ev.val
            if isinstance(v, S.Tensor):
                out.append(_TensorValue(v, constant_buffer))
            elif isinstance(v, S.Int):
                out.append(v.int_val)
            elif isinstance(v, S.Bool):
                out.append(v.bool_val)
            elif isinstance(v, S.Double):
                out.append(float(v.double_val))
            elif isinstance(v, S.String):
                out.append(v.string_val)
            elif isinstance(v, S.Null):
                out.append(None)
            elif isinstance(v, (S.IntList, S.TensorList)):
                out.append(_List(list(v.items)))
            elif isinstance(v, S.OptionalTensorList):
                out.append(_List(list(v.items), optional=True))
            elif isinstance(v, (S.DoubleList, S.BoolList)):
                out.append(list(v.items))
            else:
                raise NotImplementedError(f"Value type {type(v).__name__} is not supported on the host.")
        return out

    def _input_spec(self, position: int, index: int) -> InputSpec:
        name = f"input_{position}"
        template = self._template[index]
        if isinstance(template, _TensorValue):
            return InputSpec(name, template.dtype, tuple(template.sizes))
        return InputSpec(name, kind=type(template).__name__)

    # ------------------------------------------------------------------------------------------
    def __call__(self, *inputs):
        self.signature.check(inputs)
        arenas = {i: torch.zeros(size, dtype=torch.uint8) for i, size in self._arena_sizes.items()}
        values = [t.make(arenas) if isinstance(t, _TensorValue) else
                  (_List(t.items, t.optional) if isinstance(t, _List) else
                   (list(t) if isinstance(t, list) else t)) for t in self._template]
        for index, value in zip(self.plan.inputs, inputs):
            if isinstance(values[index], torch.Tensor):
                values[index].copy_(value)
            else:
                values[index] = value
        self._execute(values)
        outputs = [v.clone() if isinstance(v, torch.Tensor) else v for v in (values[i] for i in self.plan.outputs)]
        return pytree.tree_unflatten(outputs, self._out_spec)

    def _execute(self, values: list) -> None:
        from executorch.exir import schema as S

        instructions = self.plan.chains[0].instructions
        pc = 0
        while pc < len(instructions):
            ins = instructions[pc].instr_args
            pc += 1
            if isinstance(ins, S.KernelCall):
                kernel = self._kernels[ins.op_index]
                try:
                    kernel(values, ins.args)
                except Exception as e:
                    raise RuntimeError(f"Instruction {pc - 1} ({kernel.label}) failed: {e}") from e
            elif isinstance(ins, S.DelegateCall):
                self._call_delegate(values, ins)
            elif isinstance(ins, S.MoveCall):
                values[ins.move_to] = values[ins.move_from]
            elif isinstance(ins, S.JumpFalseCall):
                if not bool(values[ins.cond_value_index]):
                    pc = ins.destination_instruction
            elif isinstance(ins, S.FreeCall):
                pass  # memory is planned: nothing to free on the host
            else:
                raise NotImplementedError(f"Instruction {type(ins).__name__} is not supported on the host.")

    def _call_delegate(self, values: list, ins) -> None:
        delegate = self._delegates[ins.delegate_index]
        args = [_resolve(values, i) for i in ins.args]
        flat = []
        for a in args:
            flat.extend(a if isinstance(a, list) else [a])
        n_in, n_out = delegate.num_inputs, delegate.num_outputs
        if len(flat) != n_in + n_out:
            raise ValueError(
                f"{delegate.where}: the program passes {len(flat)} values, its payload declares "
                f"{n_in} inputs and {n_out} outputs."
            )
        results = delegate(flat[:n_in])
        for target, result in zip(flat[n_in:], results):
            if tuple(result.shape) != tuple(target.shape) or result.dtype != target.dtype:
                raise ValueError(
                    f"{delegate.where} returned {result.dtype}{list(result.shape)} where the "
                    f"program expects {target.dtype}{list(target.shape)}."
                )
            target.copy_(result)
