"""The device a process computes on and the arithmetic it runs in: the ONE decision of each.

A process of a distributed launch (`torchrun`, `accelerate launch`, `colorize.parallel.launch`) trains on
the GPU of its local rank, or on the CPU beside the others; `process_device` says which and starts the
process group (accelerate's `PartialState`: NCCL between GPUs, gloo between CPUs).
"""

from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as dist
from accelerate import PartialState
from fastai.torch_core import default_device, num_distrib
from torch.amp import autocast

from .config import PRECISIONS
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
NATIVE_BF16_FROM = (8, 0)  # compute capability of the first GPUs with bf16 tensor cores (A100); T4 is 7.5


def choose_precision(device, requested: str = "auto") -> str:
    """The arithmetic a run uses on `device`: "bf16", "fp16" or "fp32".

    auto: bf16 on CUDA GPUs that have it natively (compute capability 8.0 and up: A100, L4, H100),
    fp16 with loss scaling on older ones (T4, V100, P100), fp32 on the CPU. (torch's
    `is_bf16_supported()` counts emulation and says yes on a T4, where bf16 is slow.) An explicit
    choice is kept, on any device: bf16 and fp16 on the CPU run under CPU autocast.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}; choose one of: {', '.join(PRECISIONS)}")
    device = torch.device(device)
    if requested != "auto":
        return requested
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.get_device_capability(device) >= NATIVE_BF16_FROM else "fp16"


def autocast_for(device, precision: str):
    """The autocast context of a resolved precision on `device` (a no-op context for fp32)."""
    device = torch.device(device)
    if precision == "fp32":
        return contextlib.nullcontext()
    return autocast(device.type, dtype=DTYPES[precision])


def process_device(device=None) -> torch.device:
    """The device this process computes on: `device` ("cuda", "cuda:1", "cpu"), else a GPU if there is one, else the CPU.

    In a distributed launch (WORLD_SIZE > 1) it also joins the process group, once, and each process
    gets the GPU of its local rank ("cuda" means that GPU; a GPU number is refused, as every process
    would take the same one), or the CPU when "cpu" is asked for or there is no GPU.
    """
    if num_distrib() <= 1:
        return default_device() if device is None else torch.device(device)
    asked = None if device is None else torch.device(device)
    if asked is not None and asked.type == "cuda" and asked.index is not None:
        raise ValueError(f"device {asked}: in a distributed launch each process trains on the GPU of its local rank "
                         f"(LOCAL_RANK={os.environ.get('LOCAL_RANK')}); ask for 'cuda' or leave the device out")
    on_cpu = (asked is not None and asked.type == "cpu") or not torch.cuda.is_available()
    state = PartialState(cpu=on_cpu)  # accelerate sets up gloo between CPUs only when told cpu=True
    return torch.device("cpu") if on_cpu else state.device


def main_process_first():
    """A context in which rank 0 of a distributed launch runs first and the others after it (a no-op alone).

    For work whose result every process reads, such as indexing a dataset or decoding its cache: done
    once, by rank 0, and read by the others, instead of written by all of them at once.
    `process_device` must have joined the process group.
    """
    if num_distrib() <= 1:
        return contextlib.nullcontext()
    return PartialState().main_process_first()


def collective_device() -> torch.device:
    """Where the tensors of a collective live: this process's GPU for NCCL, the CPU for gloo."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def sum_over_processes(values: list[float]) -> list[float]:
    """Each value summed over the processes of a distributed fit; `values` unchanged in a single process."""
    if num_distrib() <= 1:
        return values
    total = torch.tensor(values, dtype=torch.float64, device=collective_device())
    dist.all_reduce(total)
    return total.tolist()
