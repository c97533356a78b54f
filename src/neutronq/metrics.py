"""Fidelity measures shared by tests, benchmarks, reports and the CLI."""

from __future__ import annotations

import math

import torch

__all__ = ["sqnr_db", "top1_agreement", "within_one_step"]


def sqnr_db(reference: torch.Tensor, test: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio of ``test`` against ``reference``, in dB."""
    reference, test = reference.detach().double(), test.detach().double()
    noise = (reference - test).pow(2).mean().item()
    signal = reference.pow(2).mean().item()
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(signal / noise) if signal > 0 else -math.inf


def top1_agreement(reference_logits: torch.Tensor, test_logits: torch.Tensor) -> float:
    """Fraction of rows whose arg-max class is the same."""
    return (reference_logits.argmax(-1) == test_logits.argmax(-1)).double().mean().item()


def within_one_step(reference: torch.Tensor, test: torch.Tensor, scale: float) -> float:
    """Fraction of elements that differ by at most one quantization step (``scale``)."""
    diff = (reference.detach().double() - test.detach().double()).abs()
    return (diff <= scale * 1.0001).double().mean().item()
