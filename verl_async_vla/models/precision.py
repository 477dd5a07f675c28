"""What precision a model's heavy layers compute in (`model.vision_dtype`).

Real VLAs train and serve in bf16 (verl's FSDP actor: bf16 compute, fp32 master weights). On a CPU with native bf16
math (AVX512-BF16 / AMX, which oneDNN uses) tiny_vla's conv encoder runs 2.0-2.8x faster under bf16 autocast than
in fp32 (one thread, 128 images of 64x64, forward and backward: 66-72 ms -> 25-33 ms on this project's AMD EPYC,
2026-12-07); without it bf16 is emulated and slower, hence `auto`. Only the encoder is autocast: its output is cast back to fp32,
so the heads' log-probs, values and the loss stay fp32.
"""

from __future__ import annotations

import torch

VISION_DTYPES = ("auto", "float32", "bfloat16")


def native_bf16(device: str) -> bool:
    """True where bf16 matmuls/convs run on hardware support rather than emulation."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False


def resolve_vision_dtype(name: str, device: str) -> torch.dtype:
    """`model.vision_dtype` -> the dtype the encoder computes in (`auto`: bf16 where it is native)."""
    if name not in VISION_DTYPES:
        raise ValueError(f"model.vision_dtype={name!r} is unknown; use one of {VISION_DTYPES}.")
    if name == "auto":
        return torch.bfloat16 if native_bf16(device) else torch.float32
    return getattr(torch, name)
