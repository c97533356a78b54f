"""Batch evaluation: run a data set through the lowered program on the host and compare it with
the float model and the ``convert_pt2e`` model, as numbers a report can read."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Optional, Union

import torch
import torch.utils._pytree as pytree

from neutronq._progress import progress
from neutronq.runtime._program import load_program

__all__ = ["OutputComparison", "Evaluation", "evaluate"]


@dataclass
class _Tally:
    signal: float = 0.0
    noise: float = 0.0
    agree: int = 0
    rows: int = 0

    def add(self, reference: torch.Tensor, test: torch.Tensor) -> None:
        ref, out = reference.detach().double(), test.detach().double()
        self.signal += ref.pow(2).sum().item()
        self.noise += (ref - out).pow(2).sum().item()
        if ref.dim() >= 2 and ref.shape[-1] > 1:
            self.agree += (ref.argmax(-1) == out.argmax(-1)).sum().item()
            self.rows += ref.argmax(-1).numel()

    def sqnr(self) -> float:
        if self.noise == 0:
            return math.inf
        return 10 * math.log10(self.signal / self.noise) if self.signal > 0 else -math.inf

    def top1(self) -> Optional[float]:
        return self.agree / self.rows if self.rows else None


@dataclass(frozen=True)
class OutputComparison:
    """One output of the program against one reference, over the whole data set.

    ``top1_agreement`` is the fraction of rows whose arg-max over the last dimension matches the
    reference's (None for outputs without a class dimension); ``sqnr_db`` pools every element.
    """

    output: int
    reference: str  # "float" or "quantized"
    sqnr_db: float
    top1_agreement: Optional[float]


@dataclass(frozen=True)
class Evaluation:
    """What ``evaluate`` measured: the host-simulated program against its references."""

    samples: int
    comparisons: tuple[OutputComparison, ...] = field(default_factory=tuple)

    def get(self, reference: str, output: int = 0) -> OutputComparison:
        for c in self.comparisons:
            if c.reference == reference and c.output == output:
                return c
        raise KeyError(f"No comparison of output {output} against the {reference!r} model.")

    def __str__(self) -> str:
        lines = [f"simulated program on {self.samples} samples"]
        for c in self.comparisons:
            top1 = "" if c.top1_agreement is None else f", top-1 agreement {100 * c.top1_agreement:.2f} %"
            lines.append(f"  output {c.output} vs {c.reference} model: SQNR {c.sqnr_db:.2f} dB{top1}")
        return "\n".join(lines)


def _batches(data, num_inputs: int) -> Iterable[tuple]:
    """Input tuples from a tensor set (leading dim = samples), a tuple of such, or an iterable of
    batches (a tensor, or a tuple whose first ``num_inputs`` items are inputs, e.g. (x, label))."""
    if isinstance(data, torch.Tensor):
        return [(data,)]
    if isinstance(data, tuple) and all(isinstance(t, torch.Tensor) for t in data) and len(data) == num_inputs:
        return [data]
    return data


def _chunks(batch: tuple, size: Optional[int]) -> Iterator[tuple]:
    """Split a batch into the program's fixed batch size (sample by sample for batch 1)."""
    n = batch[0].shape[0] if batch and isinstance(batch[0], torch.Tensor) and batch[0].dim() else None
    if size is None or n is None or n == size:
        yield batch
        return
    if n % size:
        raise ValueError(
            f"A batch of {n} samples cannot be split into the program's fixed batch of {size}: "
            f"use batches of a multiple of {size}."
        )
    for start in range(0, n, size):
        yield tuple(t[start : start + size] for t in batch)


def evaluate(
    program,
    data: Union[torch.Tensor, Iterable],
    float_model: Optional[Callable] = None,
    quantized_model: Optional[Callable] = None,
    max_samples: Optional[int] = None,
) -> Evaluation:
    """Run ``data`` through the lowered ``program`` on the host and compare its outputs with
    ``float_model`` and ``quantized_model`` (the ``convert_pt2e`` model), when given.

    ``data`` is a tensor of samples (``[N, ...]``), a tuple of such (one per input), or an
    iterable of batches such as a ``DataLoader`` (a batch may carry labels after the inputs; they
    are ignored). Batches larger than the batch the program was exported with run in slices of
    that size, sample by sample for batch 1; every model sees the same slices. A progress bar
    shows the batches (``NEUTRONQ_PROGRESS=0`` turns it off). Returns an ``Evaluation``.
    """
    host = load_program(program)
    num_inputs = len(host.signature.inputs)
    batch_size = host.signature.batch_size
    references = {name: model for name, model in (("float", float_model), ("quantized", quantized_model)) if model is not None}
    tallies: dict[tuple[str, int], _Tally] = {}
    samples = 0
    batches = _batches(data, num_inputs)
    if isinstance(data, torch.Tensor) or isinstance(batches, list):
        # a tensor set: iterate slice by slice so the bar counts them
        batches = [c for b in batches for c in _chunks(tuple(b)[:num_inputs], batch_size)]
    with torch.no_grad():
        for batch in progress(batches, desc="simulating on host", unit="batch"):
            batch = (batch,) if isinstance(batch, torch.Tensor) else tuple(batch)[:num_inputs]
            for inputs in _chunks(batch, batch_size):
                if max_samples is not None and samples >= max_samples:
                    break
                outputs = pytree.tree_leaves(host(*inputs))
                for name, model in references.items():
                    expected = pytree.tree_leaves(model(*inputs))
                    if len(expected) != len(outputs):
                        raise ValueError(
                            f"The {name} model returns {len(expected)} outputs, the program {len(outputs)}."
                        )
                    for i, (ref, out) in enumerate(zip(expected, outputs)):
                        tallies.setdefault((name, i), _Tally()).add(ref, out)
                samples += inputs[0].shape[0] if isinstance(inputs[0], torch.Tensor) and inputs[0].dim() else 1
            if max_samples is not None and samples >= max_samples:
                break
    comparisons = tuple(
        OutputComparison(output=i, reference=name, sqnr_db=t.sqnr(), top1_agreement=t.top1())
        for (name, i), t in sorted(tallies.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    )
    return Evaluation(samples=samples, comparisons=comparisons)
