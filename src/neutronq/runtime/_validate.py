"""A ``.pte``'s plan checked before anything runs: a damaged program raises ``ProgramError``
naming the value, instruction or tensor at fault, instead of aborting the process in a C++
kernel (ExecuTorch's quantize kernels abort on a quantization range outside their dtype) or
running with silently wrong numbers.

What is checked, in one method's plan:
  * every value: tensors (known dtype, sizes, a dim order that is a permutation, constant data
    or planned memory inside its buffer), lists (items that exist and have the list's type);
  * every instruction: its operator or delegate exists, its arguments exist and have the types
    the operator's schema asks for, a jump lands inside the chain;
  * the memory plan: the tensors one instruction reads and writes do not partly overlap;
  * every quantize / dequantize: scale positive and finite, zero point inside the quantization
    range, the range inside the dtype, the dtypes and shapes of input and output as the op
    requires;
  * every delegate: its inputs and outputs have the dtypes and shapes of its payload's TFLite
    model, and the quantize / dequantize on each side use the parameters of the payload's
    tensors (the payload is CRC-protected, so damage on the program's side shows there);
  * the output structure decodes and holds as many values as the plan returns.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

__all__ = ["ProgramError", "torch_dtype", "validate_plan"]

# No tensor of a host-checked program is larger than this; a corrupt size must not allocate.
_MAX_ELEMENTS = 1 << 31
_MAX_ARENA_BYTES = 1 << 33
_MAX_RANK = 16


class ProgramError(ValueError):
    """The ``.pte`` is damaged or malformed: the message names what and where."""

    def __init__(self, problem: str):
        super().__init__(f"Corrupt or malformed .pte: {problem}. The file was damaged after it was written "
                         "(or not written by ExecuTorch): lower the model again or copy the file again.")


def torch_dtype(scalar_type) -> Optional[torch.dtype]:
    """The torch dtype of an ExecuTorch ``ScalarType``; None for one the host cannot hold."""
    from executorch.exir.scalar_type import ScalarType as S

    table = {
        S.BYTE: torch.uint8, S.CHAR: torch.int8, S.SHORT: torch.int16, S.INT: torch.int32,
        S.LONG: torch.int64, S.HALF: torch.float16, S.FLOAT: torch.float32,
        S.DOUBLE: torch.float64, S.BOOL: torch.bool, S.BFLOAT16: torch.bfloat16,
        S.UINT16: torch.uint16, S.UINT32: torch.uint32, S.UINT64: torch.uint64,
    }
    try:
        return table.get(S(int(scalar_type)))
    except (ValueError, TypeError):
        return None


def _numel(sizes) -> int:
    n = 1
    for s in sizes:
        n *= s
    return n


class _Plan:
    """The plan's values with a description of each, for messages."""

    def __init__(self, plan, program, operators: list):
        from executorch.exir import schema as S

        self.S = S
        self.plan, self.program, self.operators = plan, program, operators
        self.values = [ev.val for ev in plan.values]
        self.roles: dict[int, str] = {}
        for i, index in enumerate(plan.inputs):
            self.roles.setdefault(index, f"input {i} of method {plan.name!r}")
        for i, index in enumerate(plan.outputs):
            self.roles.setdefault(index, f"output {i} of method {plan.name!r}")

    def name(self, index: int) -> str:
        value = self.values[index] if 0 <= index < len(self.values) else None
        kind = type(value).__name__
        if isinstance(value, self.S.Tensor):
            dtype = torch_dtype(value.scalar_type)
            kind = f"tensor {str(dtype).replace('torch.', '') if dtype else value.scalar_type}{list(value.sizes)}"
        role = self.roles.get(index)
        return f"value {index} ({kind}{', ' + role if role else ''})"

    def check_index(self, index, what: str) -> int:
        if not isinstance(index, int) or not 0 <= index < len(self.values):
            raise ProgramError(f"{what} refers to value {index}; the plan has {len(self.values)} values")
        return index


# ------------------------------------------------------------------------------------------
# values
def _check_tensor(p: _Plan, index: int, t) -> None:
    where = p.name(index)
    dtype = torch_dtype(t.scalar_type)
    if dtype is None:
        raise ProgramError(f"{where} has the dtype code {t.scalar_type!r}, which no host tensor has")
    sizes, order = list(t.sizes), list(t.dim_order)
    if len(sizes) > _MAX_RANK or any((not isinstance(s, int)) or s < 0 for s in sizes):
        raise ProgramError(f"{where} has the sizes {sizes}")
    if _numel(sizes) > _MAX_ELEMENTS:
        raise ProgramError(f"{where} would hold {_numel(sizes)} elements")
    if order and sorted(order) != list(range(len(sizes))):
        raise ProgramError(f"{where} has the dim order {order}, not a permutation of its {len(sizes)} dims")
    if t.storage_offset < 0:
        raise ProgramError(f"{where} has the storage offset {t.storage_offset}")
    nbytes = (_numel(sizes) + t.storage_offset) * torch.empty((), dtype=dtype).element_size()
    info = t.allocation_info
    if info is not None:
        arenas = p.plan.non_const_buffer_sizes
        if not 1 <= info.memory_id < len(arenas):
            raise ProgramError(f"{where} is placed in memory buffer {info.memory_id}; the plan has "
                               f"buffers 1 to {len(arenas) - 1}")
        end = info.memory_offset + nbytes
        if end > arenas[info.memory_id]:
            raise ProgramError(f"{where} lies at bytes {info.memory_offset}..{end} of memory buffer "
                               f"{info.memory_id}, which holds {arenas[info.memory_id]} bytes")
    elif t.data_buffer_idx > 0:
        buffers = p.program.constant_buffer
        if t.data_buffer_idx >= len(buffers):
            raise ProgramError(f"{where} reads constant buffer {t.data_buffer_idx}; the program has "
                               f"{len(buffers)}")
        if len(buffers[t.data_buffer_idx].storage) < nbytes:
            raise ProgramError(f"{where} needs {nbytes} bytes of constant data; its buffer "
                               f"{t.data_buffer_idx} holds {len(buffers[t.data_buffer_idx].storage)}")


def _check_values(p: _Plan) -> None:
    S = p.S
    arenas = p.plan.non_const_buffer_sizes
    if any(size < 0 or size > _MAX_ARENA_BYTES for size in arenas):
        raise ProgramError(f"the memory plan asks for buffers of {list(arenas)} bytes")
    for index, v in enumerate(p.values):
        if isinstance(v, S.Tensor):
            _check_tensor(p, index, v)
        elif isinstance(v, (S.IntList, S.TensorList, S.OptionalTensorList)):
            wanted = {S.IntList: (S.Int,), S.TensorList: (S.Tensor,),
                      S.OptionalTensorList: (S.Tensor, S.Null)}[type(v)]
            for item in v.items:
                if isinstance(v, S.OptionalTensorList) and item == -1:
                    continue
                p.check_index(item, f"the list {p.name(index)}")
                if not isinstance(p.values[item], wanted):
                    raise ProgramError(f"the list {p.name(index)} holds {p.name(item)}, not a "
                                       f"{'/'.join(w.__name__ for w in wanted)}")
        elif isinstance(v, S.Double):
            try:
                float(v.double_val)
            except (TypeError, ValueError):
                raise ProgramError(f"{p.name(index)} is not a number ({v.double_val!r})") from None
    for what, indices in (("input", p.plan.inputs), ("output", p.plan.outputs)):
        for i, index in enumerate(indices):
            p.check_index(index, f"the method's {what} {i}")


# ------------------------------------------------------------------------------------------
# instructions
def _schema_kinds(arg) -> Optional[tuple]:
    """The EValue classes an argument of this schema type may be; None: not checked."""
    from executorch.exir import schema as S

    kind = arg.type.kind()
    optional = kind == "OptionalType"
    if optional:
        kind = arg.type.getElementType().kind()
    kinds = {
        "TensorType": (S.Tensor,),
        "FloatType": (S.Double, S.Int),
        "IntType": (S.Int,),
        "SymIntType": (S.Int,),
        "BoolType": (S.Bool,),
        "NumberType": (S.Int, S.Double, S.Bool),
    }.get(kind)
    if kind == "ListType":
        element = arg.type.getElementType().kind()
        kinds = {"IntType": (S.IntList,), "SymIntType": (S.IntList,), "TensorType": (S.TensorList,),
                 "OptionalType": (S.OptionalTensorList,), "FloatType": (S.DoubleList,),
                 "BoolType": (S.BoolList,)}.get(element)
    if str(arg.type).replace("?", "") == "ScalarType":
        kinds = (S.Int,)
    if kinds is None:
        return None
    return kinds + ((S.Null,) if optional else ())


def _check_instructions(p: _Plan, kernels: list, delegates: int) -> None:
    S = p.S
    instructions = p.plan.chains[0].instructions
    for pc, instruction in enumerate(instructions):
        ins = instruction.instr_args
        where = f"instruction {pc}"
        if isinstance(ins, S.KernelCall):
            if not 0 <= ins.op_index < len(kernels):
                raise ProgramError(f"{where} calls operator {ins.op_index}; the plan has {len(kernels)}")
            kernel = kernels[ins.op_index]
            where = f"instruction {pc} ({kernel.label})"
            for a in ins.args:
                p.check_index(a, where)
            _check_kernel_args(p, kernel, ins.args, where)
        elif isinstance(ins, S.DelegateCall):
            if not 0 <= ins.delegate_index < delegates:
                raise ProgramError(f"{where} calls delegate {ins.delegate_index}; the plan has {delegates}")
            for a in ins.args:
                p.check_index(a, f"{where} (delegate {ins.delegate_index})")
        elif isinstance(ins, S.MoveCall):
            p.check_index(ins.move_from, where)
            p.check_index(ins.move_to, where)
        elif isinstance(ins, S.JumpFalseCall):
            p.check_index(ins.cond_value_index, where)
            if not 0 <= ins.destination_instruction <= len(instructions):
                raise ProgramError(f"{where} jumps to instruction {ins.destination_instruction}; the "
                                   f"chain has {len(instructions)}")
        elif isinstance(ins, S.FreeCall):
            p.check_index(ins.value_index, where)


def _check_kernel_args(p: _Plan, kernel, args: list, where: str) -> None:
    if kernel.op is None:  # et_view(self, size, out)
        if len(args) != 3:
            raise ProgramError(f"{where} passes {len(args)} values; it takes 3")
        return
    expected = len(kernel.arguments)
    # the returns follow the arguments (several returns: each, or one list of them)
    if not expected <= len(args) <= expected + max(kernel.num_returns, 1):
        raise ProgramError(f"{where} passes {len(args)} values; its schema has {expected} arguments "
                           f"and {kernel.num_returns} returns")
    if kernel.outs and kernel.num_returns == 1 and len(args) == expected + 1:  # returns its out argument
        (out,) = [index for arg, index in zip(kernel.arguments, args) if arg.name in kernel.outs][:1] or [None]
        if out is not None and args[expected] != out:
            raise ProgramError(f"{where} returns {p.name(args[expected])}, not its out argument {p.name(out)}")
    for arg, index in zip(kernel.arguments, args):
        kinds = _schema_kinds(arg)
        if kinds is not None and not isinstance(p.values[index], kinds):
            raise ProgramError(f"{where} passes {p.name(index)} as its argument {arg.name!r}, which "
                               f"takes {arg.type}")
        if isinstance(p.values[index], p.S.Tensor) and index not in p.roles:
            p.roles[index] = f"argument {arg.name!r} of {where}"


def _tensor_range(p: _Plan, index: int) -> Optional[tuple[int, int, int]]:
    t = p.values[index]
    if not isinstance(t, p.S.Tensor) or t.allocation_info is None:
        return None
    size = torch.empty((), dtype=torch_dtype(t.scalar_type)).element_size()
    start = t.allocation_info.memory_offset + t.storage_offset * size
    return t.allocation_info.memory_id, start, start + _numel(t.sizes) * size


def _check_overlaps(p: _Plan, kernels: list) -> None:
    """The tensors one instruction reads and writes never partly overlap in planned memory (a
    view shares its source's bytes exactly; an et_view is exempt)."""
    S = p.S
    for pc, instruction in enumerate(p.plan.chains[0].instructions):
        ins = instruction.instr_args
        if isinstance(ins, S.KernelCall):
            if kernels[ins.op_index].op is None:
                continue
            indices = list(ins.args)
        elif isinstance(ins, S.DelegateCall):
            indices = []
            for a in ins.args:
                v = p.values[a]
                indices.extend(v.items if isinstance(v, (S.TensorList, S.OptionalTensorList)) else [a])
        else:
            continue
        spans = sorted({(r, i) for i in indices if i >= 0 and (r := _tensor_range(p, i)) and r[1] < r[2]})
        for (a, ia), (b, ib) in zip(spans, spans[1:]):
            if a[0] == b[0] and b[1] < a[2] and a != b:
                raise ProgramError(f"instruction {pc}: {p.name(ia)} and {p.name(ib)} overlap in memory "
                                   f"buffer {a[0]} (bytes {a[1]}..{a[2]} and {b[1]}..{b[2]})")


# ------------------------------------------------------------------------------------------
# quantize / dequantize
_QUANT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.uint16, torch.int32)


def _number(p: _Plan, index: int):
    v = p.values[index]
    S = p.S
    if isinstance(v, S.Int):
        return v.int_val
    if isinstance(v, S.Double):
        return float(v.double_val)
    return None


def _constant(p: _Plan, index: int) -> Optional[np.ndarray]:
    """A constant tensor's values (a per-channel scale or zero point)."""
    t = p.values[index]
    if not isinstance(t, p.S.Tensor) or t.data_buffer_idx <= 0:
        return None
    dtype = torch_dtype(t.scalar_type)
    raw = bytes(p.program.constant_buffer[t.data_buffer_idx].storage)
    count = _numel(t.sizes)
    size = torch.empty((), dtype=dtype).element_size()
    data = torch.frombuffer(bytearray(raw[: count * size]), dtype=torch.uint8) if count else torch.empty(0, dtype=torch.uint8)
    return data.view(dtype).numpy().astype(np.float64) if count else np.zeros(0)


def quantization_of(p: _Plan, kernel, args: list) -> Optional[dict]:
    """The named arguments of a quantize / dequantize call (values resolved), else None."""
    if kernel.op is None or not kernel.label.startswith("quantized_decomposed::") or \
            not any(w in kernel.label for w in ("quantize_per_tensor", "quantize_per_channel")):
        return None
    named = {arg.name: index for arg, index in zip(kernel.arguments, args)}
    return named


def _check_quantization(p: _Plan, kernels: list) -> dict:
    """Checks every quantize / dequantize call; returns {value index of a quantize's output /
    a dequantize's input: (scale, zero point, quant_min, quant_max, instruction)}."""
    S = p.S
    found: dict[int, tuple] = {}
    for pc, instruction in enumerate(p.plan.chains[0].instructions):
        ins = instruction.instr_args
        if not isinstance(ins, S.KernelCall):
            continue
        kernel = kernels[ins.op_index]
        named = quantization_of(p, kernel, ins.args)
        if named is None:
            continue
        where = f"instruction {pc} ({kernel.label})"
        quantize = "dequantize" not in kernel.label
        dtype_code = _number(p, named["dtype"]) if "dtype" in named else None
        dtype = torch_dtype(dtype_code) if dtype_code is not None else None
        if dtype not in _QUANT_DTYPES:
            raise ProgramError(f"{where}: the quantized dtype {dtype_code!r} ({dtype}) is not an integer "
                               "type a quantizer uses")
        info = torch.iinfo(dtype)
        qmin, qmax = _number(p, named["quant_min"]), _number(p, named["quant_max"])
        for label, value in (("quant_min", qmin), ("quant_max", qmax)):
            if not isinstance(value, int) or not info.min <= value <= info.max:
                raise ProgramError(f"{where}: {label} {value} ({p.name(named[label])}) lies outside "
                                   f"{str(dtype).replace('torch.', '')} [{info.min}, {info.max}]")
        if qmin >= qmax:
            raise ProgramError(f"{where}: quant_min {qmin} is not below quant_max {qmax}")
        scale_index = named.get("scale", named.get("scales"))
        zp_index = named.get("zero_point", named.get("zero_points"))
        scales = _constant(p, scale_index) if isinstance(p.values[scale_index], S.Tensor) else \
            np.array([_number(p, scale_index)], np.float64)
        if scales is None:
            continue  # computed at run time (dynamic quantization): nothing to check here
        if not np.all(np.isfinite(scales)) or not np.all(scales > 0):
            raise ProgramError(f"{where}: the scale {scales[:4].tolist()} ({p.name(scale_index)}) is not a "
                               "positive finite number")
        if zp_index is None or isinstance(p.values[zp_index], S.Null):
            zps = np.zeros(1)
        elif isinstance(p.values[zp_index], S.Tensor):
            zps = _constant(p, zp_index)
            zps = np.zeros(1) if zps is None else zps
        else:
            zps = np.array([_number(p, zp_index)], np.float64)
        if np.any(zps < qmin) or np.any(zps > qmax) or np.any(zps != np.round(zps)):
            raise ProgramError(f"{where}: the zero point {zps[:4].tolist()} ({p.name(zp_index)}) lies outside "
                               f"the quantization range [{qmin}, {qmax}]")
        src, out = named.get("input"), named.get("out")
        if src is None or out is None:
            continue
        t_in, t_out = p.values[src], p.values[out]
        if not isinstance(t_in, S.Tensor) or not isinstance(t_out, S.Tensor):
            continue
        d_in, d_out = torch_dtype(t_in.scalar_type), torch_dtype(t_out.scalar_type)
        float_side, int_side = (d_in, d_out) if quantize else (d_out, d_in)
        if int_side != dtype:
            raise ProgramError(f"{where}: {p.name(out if quantize else src)} is not of the quantized "
                               f"dtype {str(dtype).replace('torch.', '')}")
        if not float_side.is_floating_point:
            raise ProgramError(f"{where}: {p.name(src if quantize else out)} is not a float tensor")
        if list(t_in.sizes) != list(t_out.sizes):
            raise ProgramError(f"{where}: {p.name(src)} and {p.name(out)} differ in shape")
        if "axis" in named:
            axis = _number(p, named["axis"])
            if not isinstance(axis, int) or not -len(t_in.sizes) <= axis < len(t_in.sizes):
                raise ProgramError(f"{where}: axis {axis} of a {len(t_in.sizes)}-d tensor")
            if scales.size != t_in.sizes[axis]:
                raise ProgramError(f"{where}: {scales.size} scales for {t_in.sizes[axis]} channels")
        elif scales.size == 1:
            found[out if quantize else src] = (float(scales[0]), int(zps[0]), qmin, qmax, where)
    return found


# ------------------------------------------------------------------------------------------
# delegates
def _check_delegates(p: _Plan, delegates: list, quantized: dict) -> None:
    """Each delegate's program-side tensors against its payload's TFLite inputs and outputs."""
    S = p.S
    for pc, instruction in enumerate(p.plan.chains[0].instructions):
        ins = instruction.instr_args
        if not isinstance(ins, S.DelegateCall):
            continue
        delegate = delegates[ins.delegate_index]
        io = delegate.io_details()
        if io is None:
            continue
        flat = []
        for a in ins.args:
            v = p.values[a]
            flat.extend(v.items if isinstance(v, (S.TensorList, S.OptionalTensorList)) else [a])
        ins_io, outs_io = io
        where = f"instruction {pc} ({delegate.where})"
        if len(flat) != len(ins_io) + len(outs_io):
            raise ProgramError(f"{where}: the program passes {len(flat)} values, the payload takes "
                               f"{len(ins_io)} inputs and gives {len(outs_io)} outputs")
        for index, (kind, detail) in zip(flat, [("input", d) for d in ins_io] + [("output", d) for d in outs_io]):
            t = p.values[index]
            dtype, shape, scale, zero_point = detail
            if not isinstance(t, S.Tensor) or torch_dtype(t.scalar_type) != dtype or tuple(t.sizes) != shape:
                raise ProgramError(f"{where}: {p.name(index)} is passed as a payload {kind} of "
                                   f"{str(dtype).replace('torch.', '')}{list(shape)}")
            q = quantized.get(index)
            if q is None or scale == 0.0:
                continue
            q_scale, q_zp, q_min, q_max, q_where = q
            info = torch.iinfo(dtype)
            if np.float32(q_scale) != np.float32(scale) or q_zp != zero_point or (q_min, q_max) != (info.min, info.max):
                raise ProgramError(
                    f"{q_where} quantizes {p.name(index)} with scale {q_scale:.9g}, zero point {q_zp}, range "
                    f"[{q_min}, {q_max}]; the payload's TFLite {kind} it meets has scale {scale:.9g}, zero point "
                    f"{zero_point}, range [{info.min}, {info.max}]")


def _check_structure(p: _Plan) -> None:
    import torch.utils._pytree as pytree

    meta = p.plan.container_meta_type
    try:
        out_spec = pytree.treespec_loads(meta.encoded_out_str)
        if meta.encoded_inp_str:
            pytree.treespec_loads(meta.encoded_inp_str)
    except Exception as e:  # a damaged JSON string: any error of the decoder
        raise ProgramError(f"the method's input / output structure does not decode ({type(e).__name__}: {e})") from None
    if out_spec.num_leaves != len(p.plan.outputs):
        raise ProgramError(f"the output structure holds {out_spec.num_leaves} values; the plan returns "
                           f"{len(p.plan.outputs)}")


def validate_plan(plan, program, kernels: list, delegates: list) -> None:
    """Raise ``ProgramError`` for the first damage found in ``plan`` (see the module docstring).

    ``kernels``: the plan's operators bound to host kernels (``_pte._Kernel``); ``delegates``:
    its decoded delegates (``io_details()`` gives their payload's inputs and outputs)."""
    p = _Plan(plan, program, kernels)
    _check_values(p)
    _check_instructions(p, kernels, len(delegates))
    _check_overlaps(p, kernels)
    quantized = _check_quantization(p, kernels)
    _check_delegates(p, delegates, quantized)
    _check_structure(p)
