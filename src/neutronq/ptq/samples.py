"""Calibration samples as the model's positional inputs, checked before they set any range."""

from __future__ import annotations

import torch

__all__ = ["as_input_tuple", "check_finite_inputs"]


def as_input_tuple(sample) -> tuple:
    """A calibration sample as a tuple of model inputs; a bare tensor is a 1-tuple."""
    if isinstance(sample, torch.Tensor):
        return (sample,)
    if isinstance(sample, (tuple, list)):
        return tuple(sample)
    raise TypeError(
        "Each calibration input must be a tensor or a tuple of tensors (the model's positional "
        f"inputs); got {type(sample).__name__}."
    )


def check_finite_inputs(index: int, inputs: tuple) -> None:
    for pos, t in enumerate(inputs):
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not torch.isfinite(t).all():
            bad = "NaN" if torch.isnan(t).any() else "inf"
            raise ValueError(
                f"Calibration batch {index} (input {pos}) contains {bad} values. Observers would "
                "set the quantization range from them; clean or drop that batch and call again."
            )
