"""Issue 16 item 10 (data half) and issue 12: the loader feeds the device.

The synthetic cache is filled before loader workers fork (workers never generate a sample), the
workers persist across epochs yet see every epoch's augmentation settings (they travel with the
indices), and masks travel as uint8 and become int64 only on the device.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from trainer.core.config import ConfigError, load_config
from trainer.data import SyntheticFaces
from trainer.data.dataset import to_tensor
from trainer.dist import DistContext
from trainer.loaders import num_workers_for
from trainer.build import build

ROOT = Path(__file__).resolve().parents[2]


def make(workers, extra=()):
    torch.set_num_threads(1)
    cfg = load_config(ROOT / "configs" / "lmsa_focal.yaml",
                      ["data.synthetic_train=8", "data.synthetic_val=4", "data.image_size=32", "training.batch_size=4",
                       f"training.num_workers={workers}", *extra])
    return build(cfg, torch.device("cpu"), DistContext())


class _CacheProbe(torch.utils.data.Dataset):
    """In the worker: how many synthetic samples it found already cached, and its pid."""

    def __init__(self, src):
        self.src = src

    def __len__(self):
        return len(self.src)

    def __getitem__(self, i):
        import os
        return torch.tensor([len(self.src.cache), os.getpid()])


def test_build_fills_the_synthetic_cache_before_workers_fork():
    comp = make(1)
    for ds in (comp.train_ds, comp.val_ds):
        assert len(ds.source.cache) == len(ds.source)
    probe = torch.utils.data.DataLoader(_CacheProbe(comp.train_ds.source), batch_size=8, num_workers=1)
    (cached, pid), = [b[0].tolist() for b in probe]
    assert pid != __import__("os").getpid() and cached == 8  # the worker inherited all of them


def test_persistent_workers_see_each_epochs_augmentation():
    comp = make(1)
    loader = comp.train_loader(1, 0)
    assert loader.persistent_workers and loader.num_workers == 1
    _, m1 = next(iter(loader))
    workers1 = loader._iterator._workers[:]  # noqa: SLF001 - the processes themselves
    comp.apply_live({"rotation": 0.0, "scale_range": [1.0, 1.0], "hflip": False})
    comp.augment.color_jitter = 0.0
    comp.start_epoch_augmentation()
    loader2 = comp.train_loader(2, 0)
    assert loader2 is loader
    xb, yb = next(iter(loader2))
    assert loader._iterator._workers == workers1  # same processes, not forked again  # noqa: SLF001
    perm = next(iter(loader.batch_sampler))
    i = perm[0][0]
    img, mask = comp.train_ds.source.get_raw(i)
    assert torch.equal(xb[0], to_tensor(img))                    # no augmentation: the change arrived
    assert yb.dtype == torch.uint8 and torch.equal(yb[0], torch.from_numpy(mask))
    assert m1.dtype == torch.uint8


def test_num_workers_auto_follows_the_cpus():
    assert num_workers_for("auto", 1, cpus=2) == 1
    assert num_workers_for("auto", 1, cpus=16) == 8
    assert num_workers_for("auto", 2, cpus=16) == 7
    assert num_workers_for("auto", 4, cpus=4) == 0
    assert num_workers_for(3, 1, cpus=2) == 3
    with pytest.raises(ConfigError, match="training.num_workers"):
        load_config(ROOT / "configs" / "lmsa_focal.yaml", ["training.num_workers=many"])


def test_synthetic_prefill_is_idempotent():
    ds = SyntheticFaces(3, 32, seed=1, cache=True)
    assert ds.prefill() == 3 and ds.prefill() == 0
    assert np.array_equal(ds.get_raw(2)[1], SyntheticFaces(3, 32, seed=1).get_raw(2)[1])


def test_a_trainer_with_loader_workers_stops_cleanly_on_a_process_group_sigterm(tmp_path):
    """scancel / `kill -TERM -PGID` signal every process of the group, loader workers included: the
    run still ends 'stopped' with its checkpoint (workers leave the signal to the trainer), and the
    process exits instead of waiting forever on its workers."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "r"
    cmd = [sys.executable, "-m", "trainer", "--config", str(ROOT / "configs" / "lmsa_focal.yaml"), "--run-dir", str(run),
           "--device", "cpu"]
    for s in ("data.synthetic_train=32", "data.synthetic_val=8", "data.image_size=64", "training.batch_size=8",
              "training.warmup_epochs=0", "training.log_every=1", "training.num_workers=1", "debug.step_delay=0.2"):
        cmd += ["--set", s]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while not (run / "events.jsonl").exists() or '"type":"step"' not in (run / "events.jsonl").read_text():
            assert proc.poll() is None and time.monotonic() < deadline, "no step event"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err[-2000:]
    end = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines() if '"type":"end"' in x]
    assert end and end[-1]["reason"] == "stopped" and (run / "checkpoints" / "last.pt").exists()
