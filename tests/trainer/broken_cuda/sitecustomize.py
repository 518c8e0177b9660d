"""Emulates a machine whose NVIDIA driver is broken (tests only, via PYTHONPATH): torch's
is_available() warns as it does then and returns False."""

import warnings

import torch


def _broken() -> bool:
    warnings.warn("CUDA initialization: The NVIDIA driver on your system is too old (found version 10020). "
                  "Please update your GPU driver.")
    return False


torch.cuda.is_available = _broken
