"""``load_program`` / ``run_on_host``: one entry point for every form a lowered program takes."""

from __future__ import annotations

import os
import weakref
from contextlib import contextmanager
from typing import Iterator, Optional, Union

from neutronq.runtime._edge import EdgeProgram
from neutronq.runtime._pte import PteProgram

__all__ = ["HostProgram", "load_program", "run_on_host", "simulate", "recording_delegate_calls"]

HostProgram = Union[EdgeProgram, PteProgram]
_LOADED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def load_program(program, method: Optional[str] = None) -> HostProgram:
    """Prepare a lowered program for host execution, once; the result is callable on inputs.

    ``program`` is an ``EdgeProgramManager`` (``to_edge_transform_and_lower(...)``), an
    ``ExecutorchProgramManager`` (``.to_executorch()``: its serialized ``.pte`` is what runs), a
    ``.pte`` path, or ``.pte`` bytes. Neutron delegates are decoded here, so a program lowered for
    another backend fails now, with ``UnsupportedDelegateError``.
    """
    from executorch.exir import EdgeProgramManager, ExecutorchProgramManager

    if isinstance(program, (EdgeProgram, PteProgram)):
        return program
    if isinstance(program, EdgeProgramManager):
        return EdgeProgram(program, method)
    if isinstance(program, ExecutorchProgramManager):
        return PteProgram(program.buffer, method)
    if isinstance(program, (str, os.PathLike, bytes, bytearray, memoryview)):
        return PteProgram(program, method)
    raise TypeError(
        "run_on_host takes a lowered program: the EdgeProgramManager that "
        "to_edge_transform_and_lower(...) returns, its .to_executorch() result, or a .pte path or "
        f"bytes; got {type(program).__name__}. Lower the model first (see neutronq.runtime)."
    )


def _cached(program) -> HostProgram:
    if isinstance(program, (str, os.PathLike, bytes, bytearray, memoryview)):
        return load_program(program)
    try:
        host = _LOADED.get(program)
    except TypeError:  # not weak-referenceable
        return load_program(program)
    if host is None:
        host = _LOADED[program] = load_program(program)
    return host


def run_on_host(program, *inputs):
    """Run a lowered program on the host and return its outputs as the original model does.

    Inputs and outputs are float tensors, as the exported model takes and returns them (their
    shapes and dtypes as exported: ``load_program(program).signature`` shows them). Parts that
    ``NeutronPartitioner`` delegated run as their payload's int8 TFLite model in LiteRT's
    interpreter with the reference kernels (``OpResolverType.BUILTIN_REF``): the semantics of
    the NPU converter's input. Everything else runs with the CPU kernels the ``.pte`` names
    (PyTorch's ATen kernels and ExecuTorch's quantized kernels).

    This is a check without a board, not a bit-exact NPU simulator: the NPU's own kernels may
    round differently in places (requantization, pooling and activation lookup tables), so a
    board can differ from these results by a quantization step on some elements.

    Prepared programs are cached per program object; for a ``.pte`` path or bytes, call
    ``load_program`` once and reuse its result in a loop.
    """
    return _cached(program)(*inputs)


simulate = run_on_host


@contextmanager
def recording_delegate_calls(program) -> Iterator[list]:
    """Within the block, every run of the program's Neutron delegates (through ``run_on_host`` or
    the ``load_program`` result) appends a ``DelegateCall`` (payload, int8 inputs and outputs) to
    the list it yields: the tensors ``neutronq.lowering.rounding_audit.audit_payload`` checks."""
    host = _cached(program)
    calls: list = []
    for delegate in host.delegates:
        delegate.calls = calls
    try:
        yield calls
    finally:
        for delegate in host.delegates:
            delegate.calls = None
