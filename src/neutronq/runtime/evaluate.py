"""Batch evaluation: run a data set through the lowered program on the host and compare it with
the float model and the ``convert_pt2e`` model, as numbers a report can read.

The program runs emulated by default (``neutronq.emulate``: TFLite's reference int8 arithmetic in
PyTorch, bit-exact with LiteRT and batched), or in LiteRT itself (``backend="litert"``, the
oracle: the reference kernels, sample by sample). A program the emulation cannot run (an op it
does not know: ``EmulationError``) falls back to LiteRT, with a logged warning saying so."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Optional, Union

import torch
import torch.utils._pytree as pytree

from neutronq._progress import progress
from neutronq.runtime._program import load_program
from neutronq.runtime.emulate import EmulationError
from neutronq.runtime.emulated_program import emulate

__all__ = ["OutputComparison", "Evaluation", "evaluate", "BACKENDS"]

log = logging.getLogger(__name__)

BACKENDS = ("emulate", "litert")
EMULATION_BATCH = 32  # samples per emulated call (a multiple of the program's batch)


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
    """What ``evaluate`` measured: the host-simulated program against its references.

    ``backend`` is what ran the program: ``"emulate"`` (``neutronq.emulate``) or ``"litert"``
    (LiteRT's reference kernels); ``fallback`` says why LiteRT ran when emulation was asked for
    (the ``EmulationError``), else None."""

    samples: int
    comparisons: tuple[OutputComparison, ...] = field(default_factory=tuple)
    backend: str = "litert"
    fallback: Optional[str] = None

    def get(self, reference: str, output: int = 0) -> OutputComparison:
        for c in self.comparisons:
            if c.reference == reference and c.output == output:
                return c
        raise KeyError(f"No comparison of output {output} against the {reference!r} model.")

    def __str__(self) -> str:
        how = "emulated (bit-exact with LiteRT)" if self.backend == "emulate" else "LiteRT reference kernels"
        lines = [f"simulated program on {self.samples} samples ({how})"]
        if self.fallback:
            lines.append(f"  emulation could not run it, LiteRT did: {self.fallback}")
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


def _check_divisible(batch: tuple, size: Optional[int]) -> tuple:
    """``batch`` when it holds whole multiples of the program's fixed batch ``size``."""
    n = batch[0].shape[0] if batch and isinstance(batch[0], torch.Tensor) and batch[0].dim() else None
    if size is not None and n is not None and n % size:
        raise ValueError(
            f"A batch of {n} samples cannot be split into the program's fixed batch of {size}: "
            f"use batches of a multiple of {size}."
        )
    return batch


def _chunks(batch: tuple, size: Optional[int], exact: bool = True) -> Iterator[tuple]:
    """Split a batch into chunks of ``size`` samples (the program's fixed batch: sample by sample
    for batch 1); ``exact=False`` lets a smaller batch through whole."""
    n = batch[0].shape[0] if batch and isinstance(batch[0], torch.Tensor) and batch[0].dim() else None
    if size is None or n is None or n == size or (not exact and n < size):
        yield batch
        return
    if exact and n % size:
        raise ValueError(
            f"A batch of {n} samples cannot be split into the program's fixed batch of {size}: "
            f"use batches of a multiple of {size}."
        )
    for start in range(0, n, size):
        yield tuple(t[start : start + size] for t in batch)


class _Reference:
    """A reference model called on the evaluated chunks; one that cannot take a chunk's batch (an
    exported model with its batch fixed) is called on slices of the program's batch instead."""

    def __init__(self, model: Callable, batch_size: Optional[int]):
        self.model, self.batch_size, self.sliced = model, batch_size, False

    def __call__(self, inputs: tuple) -> list:
        rows = _rows(inputs)
        if self.batch_size is None or rows == self.batch_size:
            return pytree.tree_leaves(self.model(*inputs))
        if not self.sliced:
            try:
                outputs = pytree.tree_leaves(self.model(*inputs))
                # a batch merged into another dim (a reshape to [1, -1]) is a fixed batch too
                if all(not isinstance(o, torch.Tensor) or (o.dim() and o.shape[0] == rows) for o in outputs):
                    return outputs
            except Exception:  # noqa: BLE001 - a fixed batch: any error, retried in slices below
                pass
            self.sliced = True
        parts = [pytree.tree_leaves(self.model(*c)) for c in _chunks(inputs, self.batch_size)]
        return [torch.cat(outs) for outs in zip(*parts)]


class _Precomputed:
    """Reference outputs computed beforehand, one tensor per output (or a tensor for one output),
    samples in the order of the data: each call returns the next rows."""

    def __init__(self, outputs):
        self.outputs = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
        self.position = 0

    def __call__(self, inputs: tuple) -> list:
        rows = _rows(inputs)
        start, self.position = self.position, self.position + rows
        if self.position > len(self.outputs[0]):
            raise ValueError(f"The precomputed reference outputs hold {len(self.outputs[0])} samples; "
                             "the data has more.")
        return [o[start : self.position] for o in self.outputs]


def _rows(inputs: tuple) -> int:
    return inputs[0].shape[0] if inputs and isinstance(inputs[0], torch.Tensor) and inputs[0].dim() else 1


def _reiterable(data) -> bool:
    return isinstance(data, (torch.Tensor, tuple, list)) or iter(data) is not data


def evaluate(
    program,
    data: Union[torch.Tensor, Iterable],
    float_model: Optional[Callable] = None,
    quantized_model: Optional[Callable] = None,
    max_samples: Optional[int] = None,
    backend: str = "emulate",
    batch_size: Optional[int] = None,
    fallback_max_samples: Optional[int] = None,
    reference_outputs: Optional[dict] = None,
) -> Evaluation:
    """Run ``data`` through the lowered ``program`` on the host and compare its outputs with
    ``float_model`` and ``quantized_model`` (the ``convert_pt2e`` model), when given.

    ``data`` is a tensor of samples (``[N, ...]``), a tuple of such (one per input), or an
    iterable of batches such as a ``DataLoader`` (a batch may carry labels after the inputs; they
    are ignored). ``backend`` chooses what runs the program:

    * ``"emulate"`` (default): ``neutronq.emulate(program)``, TFLite's reference int8 arithmetic
      emulated in PyTorch, bit-exact with LiteRT, on whole batches: a tensor set in chunks of
      ``batch_size`` samples (default 32, rounded to a multiple of the program's batch), an
      iterable batch by batch. If the emulation cannot run the program (``EmulationError``: an
      op it does not know), LiteRT runs it instead and a warning is logged (``Evaluation.fallback``
      says why); ``fallback_max_samples`` then caps the samples (LiteRT is slow).
    * ``"litert"``: the oracle, LiteRT's reference kernels (``run_on_host``), in slices of the
      batch the program was exported with (sample by sample for batch 1).

    ``reference_outputs`` gives references already computed, by name (``{"float": logits}``: a
    tensor per output, or the tensor of the only one, every sample of ``data`` in order), in place
    of running ``float_model`` / ``quantized_model`` again.

    The reference models see the same chunks (a model whose batch is fixed, such as an exported
    one, in slices of the program's batch). A progress bar shows the batches
    (``NEUTRONQ_PROGRESS=0`` turns it off). Returns an ``Evaluation``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "emulate":
        try:
            module = emulate(program)
        except EmulationError as e:
            return _fallback(e, program, data, float_model, quantized_model, max_samples, fallback_max_samples,
                             reference_outputs)
        program_batch = module.batch
        chunk = batch_size or EMULATION_BATCH
        if program_batch:
            chunk = max(program_batch, chunk // program_batch * program_batch) if module.batched else program_batch
        try:
            return _evaluate(module, len(module.signature.inputs), program_batch, chunk, data, float_model,
                             quantized_model, max_samples, "emulate", reference_outputs)
        except EmulationError as e:
            if not _reiterable(data):
                raise
            return _fallback(e, program, data, float_model, quantized_model, max_samples, fallback_max_samples,
                             reference_outputs)
    host = load_program(program)
    return _evaluate(host, len(host.signature.inputs), host.signature.batch_size, host.signature.batch_size, data,
                     float_model, quantized_model, max_samples, "litert", reference_outputs)


def _fallback(error: EmulationError, program, data, float_model, quantized_model, max_samples,
              fallback_max_samples: Optional[int], reference_outputs: Optional[dict]) -> Evaluation:
    reason = str(error).splitlines()[0]
    log.warning("the emulation cannot run this program (%s): evaluating it with LiteRT instead (slower)", reason)
    if fallback_max_samples is not None:
        max_samples = fallback_max_samples if max_samples is None else min(max_samples, fallback_max_samples)
    host = load_program(program)
    result = _evaluate(host, len(host.signature.inputs), host.signature.batch_size, host.signature.batch_size, data,
                       float_model, quantized_model, max_samples, "litert", reference_outputs)
    return Evaluation(result.samples, result.comparisons, backend="litert", fallback=reason)


def _evaluate(run, num_inputs: int, program_batch: Optional[int], chunk: Optional[int], data, float_model,
              quantized_model, max_samples: Optional[int], backend: str,
              reference_outputs: Optional[dict] = None) -> Evaluation:
    references = {name: _Reference(model, program_batch)
                  for name, model in (("float", float_model), ("quantized", quantized_model)) if model is not None}
    references.update({name: _Precomputed(outputs) for name, outputs in (reference_outputs or {}).items()})
    tallies: dict[tuple[str, int], _Tally] = {}
    samples = 0
    batches = _batches(data, num_inputs)
    if isinstance(data, torch.Tensor) or isinstance(batches, list):
        # a tensor set: iterate slice by slice so the bar counts them
        batches = [c for b in batches for c in _chunks(_check_divisible(tuple(b)[:num_inputs], program_batch),
                                                        chunk, exact=False)]
    desc = "emulating" if backend == "emulate" else "simulating on host (LiteRT)"
    with torch.no_grad():
        for batch in progress(batches, desc=desc, unit="batch"):
            batch = (batch,) if isinstance(batch, torch.Tensor) else tuple(batch)[:num_inputs]
            for inputs in _chunks(_check_divisible(batch, program_batch), chunk, exact=False):
                if max_samples is not None and samples >= max_samples:
                    break
                if max_samples is not None and _rows(inputs) > max_samples - samples and inputs[0].dim():
                    keep = max_samples - samples
                    if program_batch:
                        keep = -(-keep // program_batch) * program_batch
                    inputs = tuple(t[:keep] for t in inputs)
                outputs = pytree.tree_leaves(run(*inputs))
                for name, reference in references.items():
                    expected = reference(inputs)
                    if len(expected) != len(outputs):
                        raise ValueError(
                            f"The {name} model returns {len(expected)} outputs, the program {len(outputs)}."
                        )
                    for i, (ref, out) in enumerate(zip(expected, outputs)):
                        tallies.setdefault((name, i), _Tally()).add(ref, out)
                samples += _rows(inputs)
            if max_samples is not None and samples >= max_samples:
                break
    comparisons = tuple(
        OutputComparison(output=i, reference=name, sqnr_db=t.sqnr(), top1_agreement=t.top1())
        for (name, i), t in sorted(tallies.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    )
    return Evaluation(samples=samples, comparisons=comparisons, backend=backend)
