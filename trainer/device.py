"""Per-device choices: which device (``--device``), the precision on it, each DDP rank's seed, and
every local rank's GPU for the start event.

Which device a run trains on, said out loud: ``--device auto | cpu | cuda | cuda:N``.

``cuda:N`` makes GPU N the current CUDA device (kernels, caches and the NCCL communicator of this
process go there, not to GPU 0). ``auto`` on a machine that shows an NVIDIA GPU (device nodes,
the driver's /proc entry, ``nvidia-smi``) but where CUDA does not work (a broken or too-old
driver, a CPU-only torch build) falls back to the CPU and says why: the trainer prints it, and
the start event carries it as ``device_note`` with a ``device_fallback`` warning. Without any sign
of a GPU the CPU is chosen quietly, as before.
"""

from __future__ import annotations

import os
import shutil
import warnings

import torch

from trainer.core.config import ConfigError


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


GPU_SIGNS = ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia/version")


def _gpu_signs() -> list[str]:
    signs = [p for p in GPU_SIGNS if os.path.exists(p)]
    if shutil.which("nvidia-smi"):
        signs.append("nvidia-smi")
    return signs


def cuda_state() -> tuple[bool, str | None]:
    """(CUDA usable, why not although the machine seems to have an NVIDIA GPU; None = no GPU seen)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ok = torch.cuda.is_available()
    if ok:
        return True, None
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False, None  # GPUs hidden on purpose
    said = [str(w.message).strip().splitlines()[0] for w in caught if "cuda" in str(w.message).lower()]
    signs = _gpu_signs()
    if said:
        return False, f"CUDA does not work here: {said[0][:300]}"
    if signs and torch.version.cuda is None:
        return False, (f"this torch ({torch.__version__}) is a CPU-only build, but the machine has an NVIDIA GPU "
                       f"({', '.join(signs)}): install a CUDA build of torch")
    if signs:
        return False, f"torch.cuda.is_available() is False although the machine has an NVIDIA GPU ({', '.join(signs)})"
    return False, None


def choose_device(arg: str) -> tuple[torch.device, str | None]:
    """(device, note): the note says why ``auto`` fell back to the CPU on a machine with a GPU."""
    if arg == "auto":
        ok, why = cuda_state()
        if ok:
            return torch.device("cuda", torch.cuda.current_device()), None
        return torch.device("cpu"), (f"--device auto fell back to the CPU: {why}" if why else None)
    if arg == "cpu":
        return torch.device("cpu"), None
    if not arg.startswith("cuda"):
        raise ConfigError(f"--device {arg}: allowed: auto | cpu | cuda | cuda:N")
    ok, why = cuda_state()
    if not ok:
        raise ConfigError(f"--device {arg}: CUDA is not available on this machine"
                          + (f" ({why})" if why else "") + " (allowed here: cpu, auto)")
    try:
        dev = torch.device(arg)
    except RuntimeError:
        raise ConfigError(f"--device {arg}: allowed: auto | cpu | cuda | cuda:N") from None
    n = torch.cuda.device_count()
    if dev.index is not None:
        if dev.index >= n:
            raise ConfigError(f"--device {arg}: this process sees {n} GPU(s) (allowed: cuda:0..cuda:{n - 1}; "
                              "CUDA_VISIBLE_DEVICES renumbers them from 0)")
        torch.cuda.set_device(dev.index)  # the current device: caches, kernels, NCCL go there, not to GPU 0
    else:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev, None


def gpu_inventory(device: torch.device, local_world: int = 1) -> list[dict]:
    """The GPU of every local rank (rank r uses cuda:r under DDP, else the chosen device):
    ``[{rank, index, visible_id, uuid, name}]``; ``uuid`` is NVML's ``GPU-...`` form, so a monitor
    finds the device by UUID (NVML's indices follow another order, and its PIDs are the host's
    inside a container)."""
    if device.type != "cuda":
        return []
    cvd = [x.strip() for x in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if x.strip()]
    out = []
    indices = range(local_world) if local_world > 1 else [device.index if device.index is not None else 0]
    for rank, i in enumerate(indices):
        props = torch.cuda.get_device_properties(i)
        uuid = str(getattr(props, "uuid", "") or "")
        if uuid and not uuid.startswith(("GPU-", "MIG-")):
            uuid = f"GPU-{uuid}"
        out.append({"rank": rank, "index": i, "visible_id": cvd[i] if i < len(cvd) else str(i),
                    "uuid": uuid or None, "name": props.name})
    return out
