"""Calibration samples as the model's positional inputs, checked before they set any range."""

from __future__ import annotations

from typing import Optional, Union

import torch

from neutronq.devices import move_inputs

__all__ = ["as_input_tuple", "check_finite_inputs", "check_sample_types", "input_specs", "batch_free", "stack_samples"]


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


def input_specs(graph_module) -> list:
    """(name, dtype, shape) of each input the exported graph takes (None where unknown)."""
    specs = []
    for node in graph_module.graph.nodes:
        if node.op == "placeholder":
            val = node.meta.get("val")
            specs.append((node.name, getattr(val, "dtype", None), tuple(getattr(val, "shape", ())) or None))
    return specs


def check_sample_types(index: int, inputs: tuple, specs: list) -> None:
    """A calibration sample has the inputs the model was exported with: as many, tensors, of its
    dtypes and sample shape (the batch may differ where the graph allows). Integer pixels are
    refused here, before an observer meets them deep in torchao."""
    if specs and len(inputs) != len(specs):
        raise ValueError(f"Calibration batch {index} holds {len(inputs)} input(s); the model takes {len(specs)} "
                         f"({', '.join(name for name, _, _ in specs)}). Give each batch as a tuple of the "
                         "model's positional inputs.")
    for pos, (t, (name, dtype, shape)) in enumerate(zip(inputs, specs)):
        where = f"Calibration batch {index} (input {pos}, {name})"
        if not isinstance(t, torch.Tensor):
            hint = " Convert it with torch.from_numpy(...)." if type(t).__module__ == "numpy" else ""
            raise TypeError(f"{where} is a {type(t).__module__}.{type(t).__name__}, not a torch.Tensor.{hint}")
        if dtype is not None and t.dtype != dtype:
            hint = " For 8-bit pixels: x.float() / 255, then the model's normalization." if not t.is_floating_point() \
                else f" Convert it: x.to({dtype})."
            raise TypeError(f"{where} is {str(t.dtype).replace('torch.', '')}; the model was exported with "
                            f"{str(dtype).replace('torch.', '')} inputs.{hint}")
        if shape is not None and (t.dim() != len(shape) or tuple(t.shape[1:]) != tuple(shape[1:])):
            raise ValueError(f"{where} has shape {list(t.shape)}; the model was exported with {list(shape)} "
                             "(batch first). Give samples of that shape.")


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
