"""Delegate payloads on the host: Neutron payloads run in LiteRT's reference interpreter.

The payload format and its interpreter belong to the lowering (``neutronq.lowering.payload``);
this module only checks the backend id, decodes each payload once and moves tensors across.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from neutronq.backend import NEUTRON_BACKEND_ID
from neutronq.lowering.payload import NeutronPayload, PayloadError, decode_payload, payload_io, run_payload

__all__ = ["UnsupportedDelegateError", "NeutronDelegate", "DelegateCall", "load_delegate"]


class UnsupportedDelegateError(ValueError):
    """The program delegates to a backend neutronq cannot run on the host."""


def _check_backend(backend_id: str, where: str) -> None:
    if backend_id != NEUTRON_BACKEND_ID:
        raise UnsupportedDelegateError(
            f"{where} delegates to the backend {backend_id!r}; neutronq runs only "
            f"{NEUTRON_BACKEND_ID!r} delegates on the host (the programs NeutronPartitioner "
            "makes). A program lowered for another backend runs in that backend's runtime: for "
            "XNNPACK, executorch.runtime.Runtime.get().load_program(path)."
        )


@dataclass(frozen=True)
class DelegateCall:
    """One run of a delegate: its payload and the int8 tensors (PyTorch layout) in and out."""

    where: str
    payload: NeutronPayload
    inputs: tuple[np.ndarray, ...]
    outputs: tuple[np.ndarray, ...]


class NeutronDelegate:
    """One decoded Neutron payload, callable on int8 tensors in PyTorch layout. While
    ``calls`` is a list (``neutronq.runtime.recording_delegate_calls``), each run is appended."""

    def __init__(self, processed: bytes, where: str):
        try:
            self.payload = decode_payload(bytes(processed))
        except PayloadError as e:
            raise PayloadError(f"{where}: {e}") from e
        self.where = where
        self.num_inputs = len(self.payload.input_channels_last)
        self.num_outputs = len(self.payload.output_channels_last)
        self.calls: Optional[list] = None

    def io_details(self) -> Optional[tuple[list, list]]:
        """(inputs, outputs) of the payload's model: (torch dtype, PyTorch shape, scale, zero
        point) each; None for a payload neutronq does not run (kind "neutron")."""
        if self.payload.kind != "tflite":
            return None
        try:
            ins, outs = payload_io(self.payload)
        except PayloadError as e:
            raise PayloadError(f"{self.where}: {e}") from e

        def torch_side(details):
            return [(torch.from_numpy(np.zeros(0, d)).dtype, shape, scale, zp) for d, shape, scale, zp in details]

        return torch_side(ins), torch_side(outs)

    def __call__(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(inputs) != self.num_inputs:
            raise ValueError(
                f"{self.where} takes {self.num_inputs} input(s) according to its payload, "
                f"the program passes {len(inputs)}: the program and its payload disagree."
            )
        arrays = [t.detach().contiguous().numpy() for t in inputs]
        outputs = run_payload(self.payload, arrays)
        if self.calls is not None:
            self.calls.append(DelegateCall(self.where, self.payload, tuple(a.copy() for a in arrays),
                                           tuple(np.array(o) for o in outputs)))
        # np.ascontiguousarray makes 0-d arrays 1-d: a whole-tensor reduction's scalar keeps its shape
        return [torch.from_numpy(np.ascontiguousarray(o).reshape(np.shape(o))) for o in outputs]


def load_delegate(backend_id: str, processed: bytes, where: str) -> NeutronDelegate:
    """Check the backend id and decode the payload; the error names ``where`` (which delegate)."""
    _check_backend(backend_id, where)
    return NeutronDelegate(processed, where)
