"""Process settings memtx chooses by itself (the CLI applies them; library users may call them)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from typing import TYPE_CHECKING

from memtx.errors import ConfigError

if TYPE_CHECKING:
    import torch

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc mallopt parameters


def tune_allocator() -> bool:
    """Keep glibc from mapping and unmapping every large tensor.

    By default glibc serves big allocations (activations, gradients) with mmap and returns them to the OS on free,
    so every training step pays page faults on fresh memory. Serving them from the heap and never trimming it
    measured 963 -> 1821 tokens/s on the pg9-allattn-8x256 step on 2 cores (same effect as the environment
    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<large>). Set MEMTX_MALLOC=default to opt out. Returns True if applied.
    """
    if os.environ.get("MEMTX_MALLOC") == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    except (OSError, AttributeError):  # not glibc
        return False


DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


def check_device_name(name: str) -> None:
    """Refuse a --device value that names no device kind memtx runs on (whether it is present is checked when the
    run starts, on the machine that runs it)."""
    kind, colon, index = name.partition(":")
    if kind not in ("auto", "cpu", "cuda") or (colon and (kind != "cuda" or not index.isdigit())):
        raise ConfigError(f"--device must be {DEVICE_CHOICES}, got {name!r}")


def resolve_device(name: str = "auto") -> torch.device:
    """The device to run on: 'auto' is the GPU when torch sees one (under torchrun, the one of this process's
    LOCAL_RANK), else the CPU; 'cuda' without a visible GPU is an error rather than a silent fall-back."""
    import torch  # here, not at the top: the CLI starts without torch

    check_device_name(name)
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        build = "a CPU build of torch" if torch.version.cuda is None else "no GPU visible"
        raise ConfigError(f"--device {name}: torch sees no CUDA device ({build}): use --device cpu or auto")
    index = int(name.partition(":")[2] or os.environ.get("LOCAL_RANK", "0"))
    if index >= torch.cuda.device_count():
        raise ConfigError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) visible")
    return torch.device("cuda", index)


def autocast(device: torch.device, precision: str):
    """The forward's mixed-precision context: bf16 autocast (matmuls in bfloat16, attention kept in float32 by
    ``ops.attention``), or nothing for fp32."""
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def peak_gpu(device: torch.device) -> dict[str, float]:
    """{"peak_gpu_mb": the GPU's peak allocated memory in this process} for a CUDA device, {} otherwise."""
    import torch

    if device.type != "cuda":
        return {}
    return {"peak_gpu_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1)}
