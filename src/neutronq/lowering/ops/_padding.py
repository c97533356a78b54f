"""PyTorch's explicit padding against TFLite's SAME / VALID."""

from __future__ import annotations

__all__ = ["same_equivalent", "torch_out_size"]


def torch_out_size(size: int, kernel: int, stride: int, pad: int, dilation: int = 1, ceil_mode: bool = False) -> int:
    eff = dilation * (kernel - 1) + 1
    num = size + 2 * pad - eff
    out = (-(-num // stride) if ceil_mode else num // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad:  # PyTorch: last window must start inside
        out -= 1
    return out


def same_equivalent(size: int, kernel: int, stride: int, pad: int, dilation: int, out: int) -> bool:
    """True when TFLite's SAME padding reads exactly the windows PyTorch's ``pad`` reads:
    the same number of outputs and the same padding before the first element."""
    eff = dilation * (kernel - 1) + 1
    out_same = -(-size // stride)
    total = max((out_same - 1) * stride + eff - size, 0)
    return out_same == out and total // 2 == pad
