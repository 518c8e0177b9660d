"""GPU utilisation and memory of a trainer process, through nvidia-ml-py (optional).

Without the ``pynvml`` module (``pip install nvidia-ml-py``) or without a driver every call
returns None and the cockpit simply shows no GPU line. Never imports torch.
"""

from __future__ import annotations

from typing import Any

_nvml: Any = None
_state = "untried"  # untried | ok | unavailable


def _init() -> bool:
    global _nvml, _state
    if _state == "untried":
        try:
            import pynvml  # type: ignore

            pynvml.nvmlInit()
            _nvml, _state = pynvml, "ok"
        except Exception:
            _state = "unavailable"
    return _state == "ok"


def gpu_for_pids(pids: set[int]) -> dict | None:
    """``{index, name, util, mem_used, mem_total, proc_mem}`` of the first GPU running one of ``pids``."""
    if not pids or not _init():
        return None
    n = _nvml
    try:
        for i in range(n.nvmlDeviceGetCount()):
            h = n.nvmlDeviceGetHandleByIndex(i)
            procs = []
            for getter in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
                try:
                    procs += list(getattr(n, getter)(h))
                except Exception:
                    pass
            mine = [p for p in procs if p.pid in pids]
            if not mine:
                continue
            util = n.nvmlDeviceGetUtilizationRates(h).gpu
            mem = n.nvmlDeviceGetMemoryInfo(h)
            name = n.nvmlDeviceGetName(h)
            if isinstance(name, bytes):
                name = name.decode()
            proc_mem = sum((p.usedGpuMemory or 0) for p in mine)
            return {"index": i, "name": name, "util": util, "mem_used": mem.used, "mem_total": mem.total,
                    "proc_mem": proc_mem}
    except Exception:
        return None
    return None
