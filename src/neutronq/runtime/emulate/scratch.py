"""Reusable scratch memory for the ops of one ``TFLiteModule``.

Large temporaries that an op fills and consumes before the next op runs (the float copy of a
convolution's int8 input, its im2col matrix) are taken from here instead of being allocated per
call: a fresh multi-megabyte CPU tensor is page-faulted in on first touch, which costs more than
the conversion written into it. Buffers grow to the largest request and are kept between calls
(``TFLiteModule.release_scratch`` drops them); a module is therefore not meant to be called from
several threads at once.
"""

from __future__ import annotations

import math

import torch

__all__ = ["Scratch"]


class Scratch:
    def __init__(self):
        self._buffers: dict = {}

    def get(self, tag: str, shape, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """A tensor of ``shape`` (uninitialised) backed by the buffer ``tag``."""
        numel = math.prod(shape)
        key = (tag, dtype, torch.device(device))
        buf = self._buffers.get(key)
        if buf is None or buf.numel() < numel:
            buf = torch.empty(max(numel, 1), dtype=dtype, device=device)
            self._buffers[key] = buf
        return buf[:numel].view(shape)

    def clear(self) -> None:
        self._buffers.clear()


def scratch_or_new(scratch, tag: str, shape, dtype: torch.dtype, device) -> torch.Tensor:
    if scratch is None:
        return torch.empty(shape, dtype=dtype, device=device)
    return scratch.get(tag, shape, dtype, device)
