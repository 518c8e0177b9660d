"""GPU utilisation and memory of a run's devices, through nvidia-ml-py (optional).

Without the ``pynvml`` module (``pip install nvidia-ml-py``) or without a driver every call
returns None and the cockpit simply shows no GPU line. Never imports torch.

Devices are found by the UUID each trainer records in its start event (``gpus``: one entry per
local rank), not by index (NVML's indices need not follow CUDA's order or a run's
``CUDA_VISIBLE_DEVICES``) and not by PID (inside a container NVML reports the host's PIDs). PIDs
are only used, where they match, for the memory of the run's own processes.
"""

from __future__ import annotations

from typing import Any, Sequence

_nvml: Any = None
_state = "untried"  # untried | ok | unavailable


def _errors() -> tuple[type[BaseException], ...]:
    err = getattr(_nvml, "NVMLError", None)
    return (err, OSError) if isinstance(err, type) and issubclass(err, BaseException) else (OSError,)


def _init() -> bool:
    global _nvml, _state
    if _state == "untried":
        try:
            import pynvml  # type: ignore
        except ImportError:
            _state = "unavailable"
            return False
        try:
            pynvml.nvmlInit()
            _nvml, _state = pynvml, "ok"
        except (getattr(pynvml, "NVMLError", OSError), OSError):  # no driver, or the library is missing
            _state = "unavailable"
    return _state == "ok"


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _procs(h: Any) -> list:
    n, out = _nvml, []
    for getter in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
        fn = getattr(n, getter, None)
        if fn is None:
            continue
        try:
            out += list(fn(h))
        except _errors():  # not supported on this device / driver: that list is just unknown
            continue
    return out


def _describe(h: Any, pids: set[int]) -> dict:
    n = _nvml
    util = n.nvmlDeviceGetUtilizationRates(h).gpu
    mem = n.nvmlDeviceGetMemoryInfo(h)
    mine = [p for p in _procs(h) if p.pid in pids]
    return {"index": n.nvmlDeviceGetIndex(h), "name": _text(n.nvmlDeviceGetName(h)), "util": util,
            "mem_used": mem.used, "mem_total": mem.total,
            # None: the run's PIDs are not visible to NVML (a container): show the device's memory
            "proc_mem": sum((p.usedGpuMemory or 0) for p in mine) if mine else None}


def gpus_of_run(devices: Sequence[dict], pids: set[int] = frozenset()) -> list[dict] | None:
    """One dict per device of a run's start event ``gpus`` (found by ``uuid``): ``{rank, index, name,
    util, mem_used, mem_total, proc_mem}``; None when NVML is unavailable or no device is found."""
    if not devices or not _init():
        return None
    n, out = _nvml, []
    for d in devices:
        uuid = d.get("uuid") if isinstance(d, dict) else None
        if not isinstance(uuid, str) or not uuid:
            continue
        try:
            h = n.nvmlDeviceGetHandleByUUID(uuid)
            out.append({"rank": d.get("rank"), **_describe(h, set(pids))})
        except _errors():  # that device is gone or not visible from here
            continue
    return out or None


def gpu_for_pids(pids: set[int]) -> dict | None:
    """``{index, name, util, mem_used, mem_total, proc_mem}`` of the first GPU running one of ``pids``
    (for runs whose start event names no device UUID: records of older trainers)."""
    if not pids or not _init():
        return None
    n = _nvml
    try:
        for i in range(n.nvmlDeviceGetCount()):
            h = n.nvmlDeviceGetHandleByIndex(i)
            if any(p.pid in pids for p in _procs(h)):
                return _describe(h, pids)
    except _errors():
        return None
    return None
