"""What this machine computes fast: bf16 pays off only where the hardware has it.

On a CPU without native bf16 (AVX2 only, or AVX-512 without its BF16 extension) torch emulates bf16 matrix
products; measured on an AVX2-only 2-core machine, a (65536 x 64) @ (64 x 64) product took 294 ms in bf16 against
13 ms in fp32 on one thread, and a demo training step 23 s against 1.24 s. Training autocast and the fast engine's
compute type both ask here.
"""

from __future__ import annotations

import torch


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX)."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def fast_compute_dtype(device: torch.device) -> torch.dtype:
    """bf16 on GPUs and on CPUs with native bf16, float32 elsewhere."""
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16()):
        return torch.bfloat16
    return torch.float32
