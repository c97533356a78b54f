"""``emulate_payload``: a neutronq delegate payload as a batched module in PyTorch layout.

The layout rule is ``run_payload``'s (``neutronq.lowering.payload``): an input whose
``input_channels_last`` flag is set is moved from PyTorch layout to TFLite layout by moving dim 1
last (NCHW -> NHWC; rank <= 2 tensors are never moved), and an output whose
``output_channels_last`` flag is set is moved back (last dim to dim 1).
"""

from __future__ import annotations

from typing import Union

import torch

from neutronq.lowering.payload import NeutronPayload, PayloadError, decode_payload
from neutronq.runtime.emulate.base import EmulationError
from neutronq.runtime.emulate.tflite_module import TFLiteModule

__all__ = ["PayloadModule", "emulate_payload"]


class PayloadModule(torch.nn.Module):
    """``forward(*inputs)``: int8 tensors in PyTorch layout, batch ``N`` on dim 0 (a multiple of
    the model's own leading dim), as ``run_payload`` takes them; returns the output tensor (a
    tuple for several outputs) in PyTorch layout."""

    def __init__(self, payload: NeutronPayload, compile: bool = False):
        super().__init__()
        if payload.kind != "tflite":
            raise PayloadError(f"emulate_payload emulates TFLite payloads; this one is {payload.kind!r}.")
        self.model = TFLiteModule(payload.tflite, compile=compile)
        if len(payload.input_channels_last) != len(self.model.input_ids) or \
                len(payload.output_channels_last) != len(self.model.output_ids):
            raise EmulationError("the payload's layout flags do not match its model's inputs and outputs")
        self.input_channels_last = tuple(payload.input_channels_last)
        self.output_channels_last = tuple(payload.output_channels_last)

    def forward(self, *inputs):
        xs = []
        for x, cl in zip(inputs, self.input_channels_last):
            x = torch.as_tensor(x)
            xs.append(x.movedim(1, -1).contiguous() if cl and x.dim() >= 3 else x)
        outs = self.model(*xs)
        outs = outs if isinstance(outs, tuple) else (outs,)
        outs = tuple(y.movedim(-1, 1).contiguous() if cl and y.dim() >= 3 else y
                     for y, cl in zip(outs, self.output_channels_last))
        return outs[0] if len(outs) == 1 else outs


def emulate_payload(payload: Union[bytes, bytearray, NeutronPayload], compile: bool = False) -> PayloadModule:
    """The payload's TFLite model as a ``PayloadModule`` (PyTorch layout in and out); ``compile``
    as for ``TFLiteModule``."""
    if not isinstance(payload, NeutronPayload):
        payload = decode_payload(payload)
    return PayloadModule(payload, compile=compile)
