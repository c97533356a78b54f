"""Where the job runs: its device (``--device``) and, under torchrun, its place among the
processes.

``neutronq quantize`` started by ``torchrun --nproc_per_node N -m neutronq quantize ...`` runs N
processes: each takes its part of the QAT batches or of the calibration data and of the int8
evaluation (``neutronq.ptq.distributed``), and rank 0 alone lowers the model, checks it on the host
and writes the files and the report. The others log only their phase times, with their rank.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist

from neutronq.app.inputs import InputError
from neutronq.ptq import distributed as nqd

__all__ = ["Placement", "place"]


@dataclass
class Placement:
    device: torch.device
    rank: int = 0
    world: int = 1
    backend: str = ""
    started: bool = False  # this job started the process group, and ends it

    @property
    def main(self) -> bool:
        """The process that lowers, checks and writes (rank 0)."""
        return self.rank == 0

    def log(self, log: Callable[[str], None]) -> Callable[[str], None]:
        """Rank 0's log as it is; the other ranks' log nothing (see ``timer_log``)."""
        return log if self.main else (lambda message: None)

    def timer_log(self, log: Callable[[str], None]) -> Callable[[str], None]:
        """The phase times: rank 0's as they are, the others' with their rank."""
        return log if self.main else (lambda message: log(f"rank {self.rank}: {message}"))

    def as_dict(self) -> dict:
        return {"device": str(self.device), "processes": self.world,
                **({"backend": self.backend} if self.world > 1 else {})}

    def close(self) -> None:
        if self.started and dist.is_initialized():
            dist.destroy_process_group()


def place(device: str = None) -> Placement:
    """The job's device and, when torchrun started this process, the process group (NCCL for
    GPUs, Gloo for the CPU)."""
    started = nqd.launched_by_torchrun() and not dist.is_initialized()
    try:
        resolved = nqd.init(device)
    except ValueError as e:
        raise InputError(str(e), "pass --device cpu, or --device cuda:N for a GPU this machine has") from None
    placement = Placement(resolved, nqd.rank(), nqd.world_size(), dist.get_backend() if nqd.active() else "",
                          started)
    if not placement.main:
        os.environ["NEUTRONQ_PROGRESS"] = "0"  # one set of progress bars: rank 0's
    return placement
