"""What mask previews add to each validation: Previews.write (4 single-image forwards, the tiles,
PNG encoding, atomic writes) against one validation pass over the same split, on this machine.

    python -m bench.preview_cost [--size 256] [--val 100] [--device cpu]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from trainer.data.dataset import build_datasets
from trainer.model import build_model
from trainer.previews import Previews


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--val", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    torch.set_num_threads(1)
    dev = torch.device(a.device)
    _, val, _ = build_datasets(root=None, image_size=a.size, synthetic_train=8, synthetic_val=a.val)
    model = build_model(attention="lmsa", width=None, dropout=0.1).to(dev).eval()
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        pv = Previews(d, val)
        choose_s = time.perf_counter() - t
        pv.write(0, model, dev)  # warm-up
        writes = []
        for e in range(1, a.repeat + 1):
            writes.append(pv.write(e, model, dev))
        size = sum(p.stat().st_size for p in (pv.dir).glob("epoch_*.png")) / a.repeat
    t = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(val), 8):
            batch = torch.stack([val[j][0] for j in range(i, min(i + 8, len(val)))]).to(dev)
            model(batch).argmax(1)
    val_s = time.perf_counter() - t
    w = sorted(writes)[len(writes) // 2]
    print(f"size {a.size} px, {a.val} val images, {dev}, 1 thread: choosing the images {choose_s:.3f} s once; "
          f"previews per validation {w:.3f} s (median of {a.repeat}), {size / 1024:.0f} KB per epoch; "
          f"a forward pass over the val split {val_s:.2f} s -> previews add {100 * w / val_s:.1f} %")


if __name__ == "__main__":
    main()
