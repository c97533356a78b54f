"""Calibration samples as the model's positional inputs, checked before they set any range."""

from __future__ import annotations

from typing import Optional, Union

import torch

from neutronq.devices import move_inputs

__all__ = ["as_input_tuple", "check_finite_inputs", "batch_free", "stack_samples"]


def as_input_tuple(sample, device: Optional[Union[str, torch.device]] = None) -> tuple:
    """A calibration sample as a tuple of model inputs; a bare tensor is a 1-tuple. ``device``:
    where the model runs; tensors elsewhere are moved there."""
    if isinstance(sample, torch.Tensor):
        return (move_inputs(sample, device),)
    if isinstance(sample, (tuple, list)):
        return move_inputs(tuple(sample), device)
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


def batch_free(prepared, samples: list) -> bool:
    """Whether samples can run together: the graph does not bake the exported batch size in
    (``RelaxBatchGuardPass`` left a guard with a free batch) and every sample is a tuple of
    tensors of the same shapes."""
    guard = getattr(prepared, "_guards_fn", None)
    if guard is None or getattr(guard, "batch_size", 0) is not None:
        return False
    first = samples[0]
    return all(len(x) == len(first) and all(isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
                                             and a.dim() > 0 and a.shape == b.shape for a, b in zip(x, first))
               for x in samples)


def stack_samples(inputs: list[tuple]) -> tuple:
    """Samples as one batch (concatenated along dim 0); one sample as it is."""
    if len(inputs) == 1:
        return inputs[0]
    return tuple(torch.cat(parts) for parts in zip(*inputs))
