"""Choosing where tensors live (``--device``)."""

from __future__ import annotations

import torch

from gradleak.errors import GradleakError


def resolve_device(name: str | None = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; asking for a missing device is an error."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise GradleakError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GradleakError(f"device {name!r} asked for but CUDA is not available here; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise GradleakError(
            f"device {name!r} does not exist; this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    return device
