"""QAT and PTQ calibration on Fashion-MNIST (Debian package ``dataset-fashion-mnist``) in one
process or several (``torch.multiprocessing``; Gloo on the CPU, NCCL with one GPU per process),
with ``neutronq.ptq.distributed``. ``bench_distributed.py`` times it; ``tests/ptq/test_distributed.py``
runs it small.

Every process runs the same code; without a process group (one process) the helpers do the
one-process thing. One thread per process (two processes on two cores).
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
from typing import Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DistributedSampler
from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e

from neutronq import NeutronQuantizer, NeutronTargetSpec, QuantizeFusedConvBnBiasAtenPass
from neutronq.data.fashion_mnist import fashion_cnn, load_fashion_mnist, train_epoch
from neutronq.ptq import distributed as nqd
from neutronq.ptq.flow import prepare_and_calibrate
from neutronq.quantizer.qat import QATSchedule

__all__ = ["pretrained_state", "run_processes", "qat_run", "calibration_run", "quantization_parameters"]

Q = torch.ops.quantized_decomposed
_QDQ = (Q.quantize_per_tensor.default, Q.dequantize_per_tensor.default,
        Q.quantize_per_channel.default, Q.dequantize_per_channel.default)


def pretrained_state(n_train: int = 4096, epochs: int = 1, seed: int = 0) -> dict:
    """A float ``fashion_cnn`` trained for ``epochs`` on the first ``n_train`` images."""
    torch.manual_seed(seed)
    x, y = load_fashion_mnist("train", n_train)
    model = fashion_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        train_epoch(model, x, y, optimizer, generator=torch.Generator().manual_seed(seed))
    return copy.deepcopy(model.state_dict())


def _worker(rank: int, world: int, init_file: str, job, kwargs: dict, out_dir: str) -> None:
    torch.set_num_threads(1)
    cuda = str(kwargs.get("device", "cpu")).startswith("cuda")
    if cuda:  # one GPU per process
        torch.cuda.set_device(rank)
        kwargs = dict(kwargs, device=f"cuda:{rank}")
    dist.init_process_group("nccl" if cuda else "gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        torch.save(job(**kwargs), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def run_processes(job, world: int, **kwargs) -> list:
    """``job(**kwargs)`` in ``world`` processes (Gloo; one process: here, without a group); the
    result of each rank, in rank order."""
    if world == 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return [job(**kwargs)]
        finally:
            torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="neutronq_dist_") as tmp:
        init_file = os.path.join(tmp, "rendezvous")
        torch.multiprocessing.spawn(_worker, args=(world, init_file, job, kwargs, tmp), nprocs=world)
        return [torch.load(os.path.join(tmp, f"rank{r}.pt"), weights_only=False) for r in range(world)]


def quantization_parameters(converted) -> list:
    """The quantize / dequantize calls of a converted graph with their literal arguments."""
    return [(str(n.target), tuple(a for a in n.args[1:] if not isinstance(a, torch.fx.Node)))
            for n in converted.graph.nodes if n.op == "call_function" and n.target in _QDQ]


def qat_run(float_state: dict, n_train: int = 4096, n_test: int = 2000, epochs: int = 2,
            global_batch: int = 64, lr: float = 2e-4, seed: int = 0, per_channel: bool = False,
            max_steps: Optional[int] = None, device: str = "cpu", reduce_statistics: bool = True) -> dict:
    """QAT fine-tuning of ``fashion_cnn`` from ``float_state`` on this process's share of the
    first ``n_train`` images (``DistributedSampler``: the global batch ``global_batch`` of step s
    is the same images for any number of processes), observers and BN statistics frozen for the
    last epoch; converted; test accuracy from a sharded, gathered evaluation. ``max_steps``:
    stop each epoch after that many steps (timing runs). ``reduce_statistics=False``: plain
    ``DistributedDataParallel`` instead of ``nqd.wrap`` (rank 0's buffers broadcast at each
    forward; for timing the reduction)."""
    world, rank = nqd.world_size(), nqd.rank()
    if global_batch % world:
        raise ValueError(f"global batch {global_batch} does not split over {world} processes")
    x, y = (t.to(device) for t in load_fashion_mnist("train", n_train))
    x_test, y_test = (t.to(device) for t in load_fashion_mnist("test", n_test))
    torch.manual_seed(seed)
    model = fashion_cnn()
    model.load_state_dict(float_state)
    spec = NeutronTargetSpec("imxrt700")
    prepared = prepare_qat_pt2e(torch.export.export(model.eval(), (x[:1].cpu(),)).module().to(device),
                                NeutronQuantizer(spec, is_qat=True, per_channel=per_channel))
    prepared = move_exported_model_to_train(prepared)
    if reduce_statistics or world == 1:
        trained = nqd.wrap(prepared)
    else:
        trained = torch.nn.parallel.DistributedDataParallel(
            prepared, device_ids=[torch.device(device).index] if device.startswith("cuda") else None)
    schedule = QATSchedule(trained, freeze_observers_after=max(epochs - 1, 1), freeze_bn_after=max(epochs - 1, 1))
    optimizer = torch.optim.Adam(prepared.parameters(), lr=lr)
    sampler = DistributedSampler(range(len(x)), num_replicas=world, rank=rank, shuffle=True, seed=seed)
    per_rank = global_batch // world
    steps, seconds = 0, 0.0
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler))
        _synchronize(device)
        start_time = time.perf_counter()
        for step, start in enumerate(range(0, len(order), per_rank)):
            if max_steps is not None and step >= max_steps:
                break
            idx = order[start : start + per_rank]
            optimizer.zero_grad()
            F.cross_entropy(trained(x[idx]), y[idx]).backward()
            optimizer.step()
            steps += 1
        _synchronize(device)
        seconds += time.perf_counter() - start_time
        schedule.step()
    nqd.finish(prepared)
    prepared = move_exported_model_to_eval(prepared)
    state = {k: v.detach().cpu().clone() for k, v in prepared.state_dict().items()}
    converted = QuantizeFusedConvBnBiasAtenPass(default_zero_bias=True)(convert_pt2e(prepared)).graph_module
    test_batches = [x_test[i : i + 300] for i in range(0, len(x_test), 300)]  # 7, the last smaller
    logits = nqd.run_sharded(converted, test_batches)
    accuracy = 100.0 * float((logits.argmax(1).to(y_test.device) == y_test).double().mean())
    return {"rank": rank, "world": world, "prepared_state": state,
            "converted_state": {k: v.detach().cpu().clone() for k, v in converted.state_dict().items()},
            "qparams": quantization_parameters(converted), "accuracy": accuracy,
            "test_samples": len(logits), "steps": steps, "train_seconds": seconds}


def _synchronize(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


def calibration_run(float_state: dict, n_samples: int = 64, batch: int = 8,
                    activation_observers: tuple = ("minmax",), per_channel: bool = True) -> dict:
    """PTQ calibration of ``fashion_cnn`` on the first ``n_samples`` training images in batches of
    ``batch``, split over the processes (``nqd.prepare_and_calibrate``), once per activation
    observer; every observer's quantization parameters and range, by activation observer."""
    x, _ = load_fashion_mnist("train", n_samples)
    model = fashion_cnn()
    model.load_state_dict(float_state)
    exported = torch.export.export(model.eval(), (x[:1],))
    batches = [x[i : i + batch] for i in range(0, len(x), batch)]
    found = {}
    for activation_observer in activation_observers:
        quantizer = NeutronQuantizer(NeutronTargetSpec("imxrt700"), activation_observer=activation_observer,
                                     per_channel=per_channel)
        if nqd.active():
            prepared = nqd.prepare_and_calibrate(exported, batches, quantizer)
        else:
            prepared = prepare_and_calibrate(exported, batches, quantizer)
        observers = found[activation_observer] = {}
        for name, module in prepared.named_modules():
            if hasattr(module, "calculate_qparams") and isinstance(getattr(module, "min_val", None), torch.Tensor):
                scale, zero_point = module.calculate_qparams()
                observers[name] = {"scale": scale.detach().clone(), "zero_point": zero_point.detach().clone(),
                                   "min": module.min_val.detach().clone(), "max": module.max_val.detach().clone()}
    return {"rank": nqd.rank(), "observers": found}
