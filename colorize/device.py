"""The arithmetic a device runs in: the ONE decision of mixed precision, for training, inference and evaluation."""

from __future__ import annotations

import contextlib

import torch
from torch.amp import autocast

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
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
