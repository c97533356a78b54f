"""Fidelity measures of an int8 result against its float reference."""

from __future__ import annotations

import math

import torch

__all__ = ["sqnr_db", "top1_agreement"]


def sqnr_db(reference: torch.Tensor, actual: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio in dB: 10 log10(sum(ref^2) / sum((ref - actual)^2)).

    ``inf`` when the two are identical; ``-inf`` when the reference is all zeros but they differ.
    """
    ref = reference.detach().double().flatten()
    act = actual.detach().double().flatten()
    if ref.shape != act.shape:
        raise ValueError(f"Cannot compare tensors of {tuple(reference.shape)} and {tuple(actual.shape)} elements.")
    noise = float(((ref - act) ** 2).sum())
    signal = float((ref**2).sum())
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def top1_agreement(reference_logits: torch.Tensor, actual_logits: torch.Tensor) -> float:
    """Fraction of samples whose arg-max class is the same in both: [N, classes] each."""
    ref = reference_logits.reshape(reference_logits.shape[0], -1).argmax(dim=1)
    act = actual_logits.reshape(actual_logits.shape[0], -1).argmax(dim=1)
    return float((ref == act).float().mean())
