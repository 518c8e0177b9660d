"""Per-device choices: the precision on this device, and each DDP rank's seed."""

from __future__ import annotations

import torch


def rank_seed(seed: int, rank: int) -> int:
    """Rank 0 keeps the configured seed's stream; rank r > 0 gets its own (dropout, CUDA RNG)."""
    return (seed + 1_000_003 * rank) % 2**63


def _bf16_native(device: torch.device) -> tuple[bool, str]:
    """Whether this GPU computes bf16 natively (compute capability >= 8.0), and its capability."""
    major, minor = torch.cuda.get_device_capability(device)
    try:
        native = torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # a torch without the argument
        native = major >= 8
    return bool(native) and major >= 8, f"{major}.{minor}"


def choose_precision(setting: str, device: torch.device) -> tuple[bool, str]:
    """(bf16 autocast on?, why) for ``training.amp``. ``auto`` takes bf16 only where the GPU has it
    natively. Elsewhere fp32: emulated bf16 is slower than fp32, and fp16 would need loss
    scaling, whose overflow skips look exactly like the non-finite steps the cockpit turns red on."""
    if setting == "off":
        return False, "fp32: training.amp is off"
    if device.type != "cuda":
        if setting == "bf16":
            return True, "bf16: training.amp is bf16 (CPU autocast)"
        return False, "fp32: on the CPU, training.amp auto uses bf16 only on a GPU that has it natively"
    native, cc = _bf16_native(device)
    if setting == "bf16":
        return True, "bf16: training.amp is bf16" + ("" if native else f" (EMULATED on this GPU, compute capability {cc} < 8.0: expect it slower than fp32)")
    if native:
        return True, f"bf16: native on this GPU (compute capability {cc})"
    return False, (f"fp32: this GPU (compute capability {cc} < 8.0) has no native bf16 (emulated bf16 is slower "
                   "than fp32), and fp16 would need loss scaling whose overflow skips look like non-finite steps")
