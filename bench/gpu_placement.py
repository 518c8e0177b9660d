"""Issue 16 items 9 and 11 on a real GPU machine: what CPU emulation cannot show.

    python bench/gpu_placement.py [--out DIR]        # about 30 s on one H200; more GPUs, more checks

NOT RUN in the session that wrote it (no GPU was available): see bench/RESULTS.md.

1. ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (what segwatch gives its trainers) makes CUDA's ordinal i the
   GPU ``nvidia-smi -L`` calls i: compares the UUID of each, in a child process per order.
2. ``--device cuda:N`` (N = the last GPU) makes N the current device: ``torch.device("cuda")``
   allocations and ``torch.cuda.current_device()`` land there.
3. Every UUID the trainer records (``trainer.device.gpu_inventory``) is found by NVML
   (``nvmlDeviceGetHandleByUUID``), what the cockpit does (needs ``pip install nvidia-ml-py``).
4. Validation at the masks' own size: the time of ``trainer.valscore.score_batch`` for a batch
   of 16 at 512 px from logits at 128 px and at 512 px (bf16 autocast off), vs the old way
   (argmax at the training size), so the cost of scoring at the organisers' resolution is known.

Writes ``gpu_placement.json`` with every check's result; exit 1 if a check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def smi_uuids() -> list[str]:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=30).stdout
    return [m.group(2) for m in re.finditer(r"^GPU (\d+):.*\(UUID: (\S+)\)", out, re.M)]


def torch_uuids(order: str) -> list[str]:
    code = ("import torch; print('\\n'.join('GPU-' + str(torch.cuda.get_device_properties(i).uuid) "
            "for i in range(torch.cuda.device_count())))")
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env["CUDA_DEVICE_ORDER"] = order
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    return out.stdout.split()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=str(ROOT / "bench" / "out"))
    a = p.parse_args()
    import torch

    from trainer.device import choose_device, gpu_inventory

    res: dict = {"checks": {}}
    ok = True
    smi = smi_uuids()
    pci = torch_uuids("PCI_BUS_ID")
    fast = torch_uuids("FASTEST_FIRST")
    res["nvidia_smi"], res["cuda_pci_order"], res["cuda_fastest_first"] = smi, pci, fast
    res["checks"]["pci_order_matches_nvidia_smi"] = c1 = bool(smi) and pci == smi
    ok &= c1
    n = torch.cuda.device_count()
    last = n - 1
    dev, _ = choose_device(f"cuda:{last}")
    x = torch.zeros(1, device="cuda")
    res["checks"]["cuda_n_is_current"] = c2 = torch.cuda.current_device() == last and x.device.index == last
    ok &= c2
    inv = gpu_inventory(dev)
    res["inventory"] = inv
    try:
        import pynvml

        pynvml.nvmlInit()
        found = []
        for g in inv:
            h = pynvml.nvmlDeviceGetHandleByUUID(g["uuid"])
            found.append(pynvml.nvmlDeviceGetIndex(h))
        res["nvml_indices"] = found
        res["checks"]["nvml_finds_uuid"] = c3 = len(found) == len(inv)
        ok &= c3
    except ImportError:
        res["checks"]["nvml_finds_uuid"] = "skipped: pip install nvidia-ml-py"

    from trainer.losses import SegLoss
    from trainer.metrics import FScoreMeter
    from trainer.valscore import score_batch

    torch.cuda.set_device(0)
    d = torch.device("cuda", 0)
    loss_fn = SegLoss()
    masks = torch.randint(0, 19, (16, 512, 512), device=d)
    times = {}
    for size in (128, 512):
        logits = torch.randn(16, 19, size, size, device=d)
        for _ in range(3):
            score_batch(logits, masks, loss_fn, FScoreMeter(device=d), d)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(10):
            score_batch(logits, masks, loss_fn, FScoreMeter(device=d), d)
        torch.cuda.synchronize()
        times[f"score_batch_from_{size}px_ms"] = round((time.perf_counter() - t) * 100, 2)
    small = torch.randint(0, 19, (16, 128, 128), device=d)
    logits = torch.randn(16, 19, 128, 128, device=d)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(10):
        m = FScoreMeter(device=d)
        loss_fn(logits, small)
        m.update(logits.max(1).indices, small)
    torch.cuda.synchronize()
    times["old_at_128px_ms"] = round((time.perf_counter() - t) * 100, 2)
    res["val_scoring"] = times
    res["ok"] = bool(ok)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_placement.json").write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
