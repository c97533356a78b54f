"""QAT and PTQ calibration over several processes with ``torch.distributed`` (torchrun; NCCL on
GPUs, Gloo on CPUs), from inside your own script::

    from torch.utils.data import DataLoader, DistributedSampler
    from neutronq.ptq import distributed as nqd

    device = nqd.init()              # the process group from torchrun's environment; this rank's device
    prepared = prepare_qat_pt2e(torch.export.export(model, example).module(),
                                NeutronQuantizer(spec, is_qat=True))
    prepared = move_exported_model_to_train(prepared.to(device))
    model = nqd.wrap(prepared)       # DistributedDataParallel; every rank starts from rank 0's state
    sampler = DistributedSampler(train_set, shuffle=True, seed=0)
    loader = DataLoader(train_set, batch_size=global_batch // nqd.world_size(), sampler=sampler)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for x, y in loader:
            optimizer.zero_grad()
            loss_fn(model(x.to(device)), y.to(device)).backward()
            optimizer.step()
        schedule.step()              # QATSchedule(model, ...) takes the wrapper too
    nqd.finish(prepared)             # the last step's statistics reduced; the synchronisation removed
    quantized = convert_pt2e(move_exported_model_to_eval(prepared))     # the same on every rank
    logits = nqd.run_sharded(quantized, test_batches)   # each rank runs its part; all get everything
    if nqd.is_main():
        ...write files...

``torchrun --nproc_per_node N -m neutronq quantize ... --qat`` does this (``neutronq.app``).
Without a process group (plain ``python script.py``) every function here does the one-process
thing: ``wrap`` returns the model, ``sync`` / ``finish`` do nothing, ``shard`` keeps everything.

What keeps the ranks identical in QAT (and equal to one process that sees the global batch):
  * parameters: ``DistributedDataParallel`` averages the gradients (the buffers are not broadcast
    from rank 0 at each forward, as DDP would by default: that would throw away the other ranks'
    statistics);
  * observer ranges: after each training step every observer's ``min_val`` / ``max_val`` is
    reduced with MIN / MAX over the ranks. For the moving-average observers of QAT this is exact:
    each rank moved the same old range towards its batch's extreme, ``m + c (x_r - m)``, which
    grows with ``x_r``, so the minimum over ranks is ``m + c (min_r x_r - m)``: the update one
    process makes for the global batch. Only that step's own forward fake-quantizes with the
    rank's own update (a ``c`` = 1 % move of the range);
  * the fake-quantize modules' ``scale`` / ``zero_point``: recomputed from the reduced ranges;
  * batch-norm running statistics (the QAT conv / linear + BN units, and any other training batch
    norm): averaged over the ranks. For the mean this is what one process computes for the global
    batch (equal per-rank batches); the variance misses the spread between the ranks' means
    (the same approximation as DDP without SyncBatchNorm, whose batch statistics in the forward
    are also per rank).
When: at the start of each forward in training mode, for the previous step (right after a forward
autograd still holds the batch norm's running statistics for the backward), and in ``sync`` /
``finish``. Every rank must run the same number of training forwards (DDP needs that too).

PTQ calibration (``prepare_and_calibrate``, or ``calibrate`` of your own shard then
``merge_observers``): each rank calibrates its part and the observers are merged to what one
process that saw all of it holds: min / max observers exactly (MIN / MAX); histogram observers
(the default ``histogram``, ``percentile``, ``mse``) by re-binning every rank's histogram into the
global range (mass spread evenly over each bin) and adding them. One process re-bins its own
histogram each time its range grows, so its result depends on the order it saw the data: measured on
Fashion-MNIST (13 activation observers, 4 splits of 64-256 images), reversing or shuffling the
batches in one process moves scales by up to 4.3 % (median 0), and the merge of 2 or 3 processes
differs from one process by up to 3.7 % (median 0): within that. Moving-average observers are
averaged over the ranks (the order of the data matters to them too; measured up to 7.6 %).
"""

from __future__ import annotations

import datetime
import inspect
import os
from typing import Callable, Iterable, Optional, Sequence, Union

import torch
import torch.distributed as dist
from torch.fx import GraphModule
from torch.utils._pytree import tree_flatten, tree_unflatten
from torchao.quantization.pt2e import HistogramObserver, MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver

from neutronq.aten_passes.fuse_batch_norm_for_qat import TRAINING_ATTR, qat_batch_norm
from neutronq.devices import model_device, resolve_device
from neutronq.ptq.flow import calibrate, prepare, run_steps
from neutronq.ptq.samples import as_input_tuple
from neutronq.quantizer.qat import DISTRIBUTED_SYNC_ATTR, unwrap
from neutronq.quantizer.steps import PtqSteps

__all__ = [
    "init",
    "active",
    "rank",
    "world_size",
    "is_main",
    "shard",
    "broadcast_state",
    "wrap",
    "sync",
    "finish",
    "merge_observers",
    "prepare_and_calibrate",
    "run_sharded",
]

aten = torch.ops.aten
# batch-norm calls that update running statistics in training: target -> (mean, var) arg indices
_BATCH_NORMS = {
    qat_batch_norm: (4, 5),
    aten.batch_norm.default: (3, 4),
    aten._native_batch_norm_legit.default: (3, 4),
    aten.native_batch_norm.default: (3, 4),
}
_MOVING_AVERAGE = (MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver)


# --------------------------------------------------------------------------------------------
# the process group
# --------------------------------------------------------------------------------------------
def active(group=None) -> bool:
    """Whether a process group of more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def rank(group=None) -> int:
    return dist.get_rank(group) if dist.is_available() and dist.is_initialized() else 0


def world_size(group=None) -> int:
    return dist.get_world_size(group) if dist.is_available() and dist.is_initialized() else 1


def is_main(group=None) -> bool:
    """Rank 0 (or no process group): the process that writes files and reports."""
    return rank(group) == 0


def launched_by_torchrun() -> bool:
    """Whether this process is one of several that torchrun (or a launcher like it) started."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: Union[str, torch.device, None] = None, backend: Optional[str] = None,
         timeout_s: Optional[float] = None) -> torch.device:
    """Starts the process group from torchrun's environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR`` / ``MASTER_PORT``) and returns this process's device: GPU
    ``LOCAL_RANK`` for ``device`` "cuda" (the default when CUDA is present), else the CPU. The
    backend is NCCL on GPUs and Gloo on CPUs unless ``backend`` says otherwise. Outside torchrun
    (``WORLD_SIZE`` unset or 1) no group is started; with one already running it is kept."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank if launched_by_torchrun() or dist.is_initialized() else None)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    if launched_by_torchrun() and not dist.is_initialized():
        kwargs = {} if timeout_s is None else {"timeout": datetime.timedelta(seconds=timeout_s)}
        dist.init_process_group(backend=backend or ("nccl" if resolved.type == "cuda" else "gloo"), **kwargs)
    return resolved


def _comm_device(group=None) -> torch.device:
    """Where a collective's tensors must be: the current GPU for NCCL, else the CPU."""
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _all_reduce(flat: torch.Tensor, op, group=None) -> torch.Tensor:
    device = _comm_device(group)
    moved = flat.to(device)
    dist.all_reduce(moved, op=op, group=group)
    return moved.to(flat.device)


def shard(items: Sequence, group=None) -> Sequence:
    """This rank's contiguous part of ``items`` (a list, or a tensor along dim 0): ranks get
    ``len(items) / world_size`` items each (one more for the first ones when it does not divide),
    every item exactly once. Everything without a process group."""
    n, w, r = len(items), world_size(group), rank(group)
    return items[n * r // w : n * (r + 1) // w]


# --------------------------------------------------------------------------------------------
# model state
# --------------------------------------------------------------------------------------------
def broadcast_state(model: torch.nn.Module, src: int = 0, group=None) -> None:
    """Every parameter and buffer of ``model`` (the prepared model: observers, fake-quantize
    parameters, batch-norm statistics) set to rank ``src``'s values, in place."""
    if not active(group):
        return
    device = _comm_device(group)
    with torch.no_grad():
        for tensor in list(unwrap(model).parameters()) + list(unwrap(model).buffers()):
            if tensor.numel() == 0:
                continue
            moved = tensor.detach().to(device)
            dist.broadcast(moved, src=src, group=group)
            if moved.data_ptr() != tensor.data_ptr():
                tensor.copy_(moved)


def _observers(model: torch.nn.Module) -> list:
    """The modules holding a range: ``min_val`` and ``max_val`` tensors (observers, and those
    inside fake-quantize modules)."""
    return [m for m in model.modules()
            if isinstance(getattr(m, "min_val", None), torch.Tensor) and isinstance(getattr(m, "max_val", None), torch.Tensor)]


def _fake_quantizers(model: torch.nn.Module) -> list:
    return [m for m in model.modules()
            if isinstance(getattr(m, "scale", None), torch.Tensor) and hasattr(m, "activation_post_process")
            and isinstance(getattr(m.activation_post_process, "min_val", None), torch.Tensor)]


def _batch_norm_statistics(model: torch.nn.Module) -> list[torch.Tensor]:
    """The running mean and variance of every batch norm of the graph (each tensor once)."""
    gm = unwrap(model)
    if not isinstance(gm, GraphModule):
        return [b for m in gm.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                for b in (m.running_mean, m.running_var) if b is not None]
    found, seen = [], set()
    for node in gm.graph.nodes:
        indices = _BATCH_NORMS.get(node.target) if node.op == "call_function" else None
        for i in indices or ():
            a = node.args[i] if len(node.args) > i else None
            if getattr(a, "op", None) != "get_attr":
                continue
            value = gm
            for part in str(a.target).split("."):
                value = getattr(value, part)
            if isinstance(value, torch.Tensor) and id(value) not in seen:
                seen.add(id(value))
                found.append(value)
    return found


def _initialized(observer) -> bool:
    return observer.min_val.numel() > 0 and bool(torch.isfinite(observer.min_val).all())


def _rebin(histogram: torch.Tensor, lo: float, hi: float, new_lo: float, new_hi: float) -> torch.Tensor:
    """A histogram of ``bins`` equal bins over [lo, hi] as one over [new_lo, new_hi] (which holds
    it), each bin's count spread evenly over its width; float64."""
    bins = histogram.numel()
    counts = histogram.to(torch.float64)
    if hi == lo or new_hi == new_lo:  # everything at one value: into the bin that holds it
        out = torch.zeros(bins, dtype=torch.float64, device=histogram.device)
        at = 0 if new_hi == new_lo else min(bins - 1, max(0, int((lo - new_lo) / (new_hi - new_lo) * bins)))
        out[at] = counts.sum()
        return out
    if lo == new_lo and hi == new_hi:
        return counts
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64, device=histogram.device)
    cumulative = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
    new_edges = torch.linspace(new_lo, new_hi, bins + 1, dtype=torch.float64, device=histogram.device)
    index = (torch.searchsorted(edges, new_edges, right=True) - 1).clamp(0, bins - 1)
    fraction = ((new_edges - edges[index]) / (edges[1] - edges[0])).clamp(0.0, 1.0)
    mass_below = cumulative[index] + fraction * counts[index]
    return torch.diff(mass_below).clamp_min(0.0)


def _reduce(model: torch.nn.Module, group, moving_average: str) -> None:
    """Observer ranges, histograms and batch-norm statistics made equal on every rank (see the
    module docstring). ``moving_average``: "extremes" (MIN / MAX: a QAT step) or "mean"."""
    gm = unwrap(model)
    observers = _observers(gm)
    averaged = [o for o in observers if moving_average == "mean" and isinstance(o, _MOVING_AVERAGE)]
    extremes = [o for o in observers if not any(o is a for a in averaged)]
    histograms = [o for o in extremes if isinstance(o, HistogramObserver)]
    before = {id(o): (o.histogram.clone(), float(o.min_val), float(o.max_val)) for o in histograms if _initialized(o)}
    device = model_device(gm)
    with torch.no_grad():
        # 1. every range's extremes: MIN over the minima and the negated maxima
        parts = [t for o in extremes for t in (o.min_val.reshape(-1), -o.max_val.reshape(-1))]
        if parts:
            flat = _all_reduce(torch.cat([p.to(device, torch.float64) for p in parts]), dist.ReduceOp.MIN, group)
            start = 0
            for o in extremes:
                for name, sign in (("min_val", 1.0), ("max_val", -1.0)):
                    t = getattr(o, name)
                    t.copy_((sign * flat[start : start + t.numel()]).reshape(t.shape).to(t.dtype))
                    start += t.numel()
        # 2. sums: histograms in the global range, averaged ranges (with how many ranks have one),
        # batch-norm statistics
        statistics = _batch_norm_statistics(gm)
        parts = []
        for o in histograms:
            if id(o) in before and _initialized(o):
                hist, lo, hi = before[id(o)]
                parts.append(_rebin(hist, lo, hi, float(o.min_val), float(o.max_val)))
            else:
                parts.append(torch.zeros(o.histogram.numel(), dtype=torch.float64, device=device))
        for o in averaged:
            seen = _initialized(o)
            for t in (o.min_val, o.max_val):
                parts.append(torch.where(torch.isfinite(t), t, torch.zeros_like(t)).reshape(-1).double() * float(seen))
            parts.append(torch.tensor([float(seen)], dtype=torch.float64, device=device))
        parts += [t.reshape(-1).to(torch.float64) for t in statistics]
        if parts:
            flat = _all_reduce(torch.cat([p.to(device) for p in parts]), dist.ReduceOp.SUM, group)
            start = 0

            def take(n: int) -> torch.Tensor:
                nonlocal start
                start += n
                return flat[start - n : start]

            for o in histograms:
                merged = take(o.histogram.numel())
                o.histogram.copy_(merged.to(o.histogram.dtype))
            for o in averaged:
                sums = [take(t.numel()) for t in (o.min_val, o.max_val)]
                ranks_seen = float(take(1))
                if ranks_seen > 0:
                    for t, total in zip((o.min_val, o.max_val), sums):
                        t.copy_((total / ranks_seen).reshape(t.shape).to(t.dtype))
            w = world_size(group)
            for t in statistics:
                t.copy_((take(t.numel()) / w).reshape(t.shape).to(t.dtype))
        # 3. the fake-quantize parameters from the reduced ranges
        for fq in _fake_quantizers(gm):
            if not _initialized(fq.activation_post_process):
                continue
            scale, zero_point = fq.calculate_qparams()
            if fq.scale.shape != scale.shape:
                fq.scale.resize_(scale.shape)
                fq.zero_point.resize_(zero_point.shape)
            fq.scale.copy_(scale.to(fq.scale.device))
            fq.zero_point.copy_(zero_point.to(fq.zero_point.device))


def sync(model: torch.nn.Module, group=None) -> None:
    """Reduces a QAT model's observer ranges (MIN / MAX) and batch-norm statistics (mean) over the
    ranks and recomputes its fake-quantize parameters (see the module docstring); every rank must
    call it. ``wrap`` does it at each training step; call it (or ``finish``) after the last one.
    Nothing without a process group."""
    if active(group):
        _reduce(model, group, moving_average="extremes")
        state = unwrap(model).__dict__.get(DISTRIBUTED_SYNC_ATTR)
        if state is not None:
            state.dirty = False


def merge_observers(prepared: torch.nn.Module, group=None) -> None:
    """After each rank calibrated its own part of the data (PTQ): every observer made what one
    process that saw all of it holds (see the module docstring: exact for min / max observers).
    Every rank must call it. Nothing without a process group."""
    if not active(group):
        return
    gm = unwrap(prepared)
    # the same observers, of the same sizes, on every rank (a per-channel observer that saw
    # nothing is empty): else the collectives would mix them up
    sizes = torch.tensor([sum(o.min_val.numel() for o in _observers(gm))], dtype=torch.float64)
    low, high = _all_reduce(sizes, dist.ReduceOp.MIN, group), _all_reduce(-sizes, dist.ReduceOp.MIN, group)
    if float(low) != -float(high):
        raise RuntimeError("merge_observers: the ranks' observers differ in size (a rank calibrated on "
                           "no data?); give every rank at least one calibration input.")
    _reduce(gm, group, moving_average="mean")


# --------------------------------------------------------------------------------------------
# QAT: DistributedDataParallel with the quantization state kept equal
# --------------------------------------------------------------------------------------------
class _Sync:
    """The synchronisation ``wrap`` attaches to a prepared model (see ``sync``)."""

    def __init__(self, group):
        self.group = group
        self.dirty = False
        self.handles: list = []

    def __deepcopy__(self, memo):  # a copy of the model shares it (a process group does not copy)
        return self

    def finish(self, model: torch.nn.Module) -> None:
        sync(model, self.group)
        for handle in self.handles:
            handle.remove()
        unwrap(model).__dict__.pop(DISTRIBUTED_SYNC_ATTR, None)


def _training(module: torch.nn.Module) -> bool:
    return bool(getattr(module, TRAINING_ATTR, module.training))


def _before_forward(module, args):
    state = module.__dict__.get(DISTRIBUTED_SYNC_ATTR)
    if state is not None and state.dirty and _training(module):
        sync(module, state.group)


def _after_forward(module, args, output):
    state = module.__dict__.get(DISTRIBUTED_SYNC_ATTR)
    if state is not None and _training(module):
        state.dirty = True


def wrap(prepared: GraphModule, group=None, **ddp_kwargs) -> torch.nn.Module:
    """The QAT-prepared model (on this rank's device) in ``DistributedDataParallel``, every
    parameter and buffer first set to rank 0's, its observer ranges and batch-norm statistics
    reduced over the ranks at each training step (see the module docstring). Train the wrapper;
    call ``finish(prepared)`` after training (``calibrate_and_quantize`` does). ``ddp_kwargs`` go
    to ``DistributedDataParallel`` (``device_ids`` defaults to the model's GPU). Without a
    process group the model comes back as it is."""
    if not active(group):
        return prepared
    if prepared.__dict__.get(DISTRIBUTED_SYNC_ATTR) is not None:
        raise ValueError("wrap: this model is wrapped already; train the wrapper wrap returned.")
    broadcast_state(prepared, group=group)
    device = model_device(prepared)
    if device.type == "cuda":
        ddp_kwargs.setdefault("device_ids", [device.index if device.index is not None else torch.cuda.current_device()])
    # no broadcast of rank 0's buffers at each forward: the statistics are reduced instead
    parameters = inspect.signature(torch.nn.parallel.DistributedDataParallel).parameters
    ddp_kwargs.setdefault("forward_sync_buffers" if "forward_sync_buffers" in parameters else "broadcast_buffers", False)
    wrapped = torch.nn.parallel.DistributedDataParallel(prepared, process_group=group, **ddp_kwargs)
    state = _Sync(group)
    state.handles = [prepared.register_forward_pre_hook(_before_forward),
                     prepared.register_forward_hook(_after_forward)]
    prepared.__dict__[DISTRIBUTED_SYNC_ATTR] = state
    return wrapped


def finish(model: torch.nn.Module) -> None:
    """After QAT across processes: the last step's observer ranges and batch-norm statistics
    reduced over the ranks, and ``wrap``'s synchronisation taken off the prepared model. Every
    rank must call it; nothing for a model ``wrap`` did not wrap."""
    state = unwrap(model).__dict__.get(DISTRIBUTED_SYNC_ATTR)
    if state is not None:
        state.finish(unwrap(model))


# --------------------------------------------------------------------------------------------
# PTQ: calibration split over the ranks
# --------------------------------------------------------------------------------------------
def prepare_and_calibrate(model, calibration_inputs: Iterable, quantizer, group=None) -> GraphModule:
    """``neutronq.prepare_and_calibrate`` over the ranks: each rank gets the same
    ``calibration_inputs`` and calibrates its ``shard`` of them; the observers are merged
    (``merge_observers``); then the quantizer's steps (AdaRound, bias correction, distillation)
    run on every rank over all the inputs and rank 0's result is given to all (``broadcast_state``),
    so every rank returns the same calibrated model. Without a process group it is
    ``neutronq.prepare_and_calibrate``."""
    samples = list(calibration_inputs) if calibration_inputs is not None else None
    prepared = prepare(model, quantizer, samples)
    if samples is not None and 0 < len(samples) < world_size(group):
        raise ValueError(f"{len(samples)} calibration inputs for {world_size(group)} processes: give every "
                         "process at least one (more inputs, or fewer processes).")
    broadcast_state(prepared, group=group)  # rank 0's weights everywhere (a model made with a random seed)
    calibrate(prepared, shard(samples, group), keep=False)
    merge_observers(prepared, group)
    steps: PtqSteps = getattr(quantizer, "steps", None) or PtqSteps()
    if steps.any:
        device = model_device(prepared)
        run_steps(prepared, [as_input_tuple(s, device) for s in samples], quantizer)
        broadcast_state(prepared, group=group)
    return prepared


# --------------------------------------------------------------------------------------------
# evaluation: each rank runs its part, every rank gets all of it
# --------------------------------------------------------------------------------------------
def _concatenate(outputs: list):
    leaves, spec = tree_flatten(outputs[0])
    columns = [torch.cat([tree_flatten(o)[0][i] for o in outputs]) for i in range(len(leaves))]
    return tree_unflatten(columns, spec)


def run_sharded(fn: Callable, batches: Sequence, group=None, device: Union[str, torch.device, None] = None):
    """``fn`` (a model) on every batch of ``batches`` (input tuples or tensors, the same list on
    every rank), the outputs concatenated along dim 0 in the order of ``batches``, as one process
    running them all would return them (a tensor, or a tuple of tensors), on every rank. Each rank
    runs a contiguous block of batches, all ranks the same number (the last ones again where
    they do not divide: their outputs are dropped), so collectives inside ``fn`` stay in step.
    Inputs go to ``device`` (default: ``fn``'s when it is a module). The gathered outputs are on
    the GPU for NCCL, on the CPU for Gloo."""
    batches = list(batches)
    if not batches:
        raise ValueError("run_sharded: no batches to run.")
    if device is None and isinstance(fn, torch.nn.Module):
        device = model_device(fn)
    if not active(group):
        with torch.no_grad():
            return _concatenate([fn(*as_input_tuple(b, device)) for b in batches])
    n, w, r = len(batches), world_size(group), rank(group)
    per = -(-n // w)
    mine = batches[r * per : (r + 1) * per]
    padded = mine + [batches[-1]] * (per - len(mine))
    with torch.no_grad():
        outputs = [fn(*as_input_tuple(b, device)) for b in padded]
    leaves = [tree_flatten(o)[0] for o in outputs]  # per batch: its output tensors
    spec = tree_flatten(outputs[0])[1]
    real = [len(batches[q * per : (q + 1) * per]) for q in range(w)]
    # as tensors when every batch of every rank gives the same shapes, else as objects
    shapes = [[tuple(t.shape) for t in row] for row in leaves]
    everyone: list = [None] * w
    dist.all_gather_object(everyone, shapes, group=group)
    if all(s == everyone[0][0] for rank_shapes in everyone for s in rank_shapes):
        device = _comm_device(group)
        columns = []
        for column in range(len(leaves[0])):
            local = torch.stack([row[column].detach() for row in leaves]).to(device).contiguous()  # [per, ...]
            parts = [torch.empty_like(local) for _ in range(w)]
            dist.all_gather(parts, local, group=group)
            columns.append(torch.cat([part[:count].flatten(0, 1) for part, count in zip(parts, real)]))
        return tree_unflatten(columns, spec)
    rows: list = [None] * w
    dist.all_gather_object(rows, [[t.detach().cpu() for t in row] for row in leaves], group=group)
    kept = [row for part, count in zip(rows, real) for row in part[:count]]
    return tree_unflatten([torch.cat([row[c] for row in kept]) for c in range(len(kept[0]))], spec)
