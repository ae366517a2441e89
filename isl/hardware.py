"""What this machine runs fast, detected (not guessed), and the process-wide settings that make use of it.

- `native_bf16(device)`: whether the device multiplies bfloat16 natively. A CPU does when it has AMX-BF16 or
  AVX512-BF16 (x86) or the BF16 extension (aarch64): oneDNN then runs bf16 convolutions and matmuls at two or
  more times the float32 rate (docs/scale.md). Without them, bf16 is emulated and slower than float32. A CUDA
  device does from compute capability 8.0 (Ampere) on.
- `tune_allocator()`: glibc's malloc hands every block of 32 MiB or more straight back to the kernel when it is
  freed, so each B x N temporary of the objective (256 x 60,000 floats = 61 MB) is page-faulted in afresh on
  every step: measured here, that doubles the cost of a log_softmax over the bank and makes an NPID step 2x
  slower. Keeping such blocks in the heap (M_MMAP_MAX = 0, no trimming) lets them be reused. This is the
  effect the PyTorch CPU tuning guide gets from jemalloc / tcmalloc, with nothing to install. The environment
  variable ISL_MALLOC_TUNING=off leaves the allocator as it is (tools/bench/throughput.py's `before` row).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import platform
from pathlib import Path

import torch

# x86 flags of native bf16 arithmetic (AMX tiles, AVX512 dot products); aarch64's FEAT_BF16 is "bf16"
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags: torch's own cpuinfo reading where it exists, else /proc/cpuinfo (Linux)."""
    flags: set[str] = set()
    reader = getattr(getattr(torch._C, "_cpu", None), "_get_cpu_capability", None)
    if reader is not None:
        try:
            flags |= {name for name, value in reader().items() if value is True}
        except (RuntimeError, TypeError):
            pass
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                flags |= set(value.split())
    return frozenset(flags)


@functools.cache
def cpu_name() -> str:
    """The CPU's model name (torch's cpuinfo, else /proc/cpuinfo, else the machine type)."""
    reader = getattr(getattr(torch._C, "_cpu", None), "_get_cpu_capability", None)
    try:
        name = reader()["cpu_name"] if reader is not None else ""
    except (RuntimeError, TypeError, KeyError):
        name = ""
    cpuinfo = Path("/proc/cpuinfo")
    if not name and cpuinfo.is_file():
        name = next((line.partition(":")[2].strip() for line in cpuinfo.read_text(errors="replace").splitlines()
                     if line.startswith("model name")), "")
    return name or platform.machine()


def native_bf16(device: torch.device) -> bool:
    """Whether `device` runs bf16 matmuls and convolutions natively (faster than float32)."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        return bool(torch.backends.mkldnn.is_available() and cpu_flags() & set(BF16_CPU_FLAGS))
    return False


def describe(device: torch.device) -> str:
    """One line naming the device and its bf16 support, for run.log and the benches."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (bf16 {'native' if native_bf16(device) else 'emulated'})"
    native = sorted(cpu_flags() & set(BF16_CPU_FLAGS))
    return (f"{cpu_name()} CPU, {torch.get_num_threads()} threads, bf16 "
            + (f"native ({', '.join(native)})" if native else "not native"))


@functools.cache
def tune_allocator() -> bool:
    """Keep large freed blocks in the heap for reuse (glibc only; elsewhere nothing changes). True if applied."""
    if platform.system() != "Linux" or os.environ.get("ISL_MALLOC_TUNING", "on").lower() == "off":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**31 - 1))
