"""One rank of the process-group tests in test_dist.py (run as a script: RANK, WORLD_SIZE,
MASTER_ADDR/PORT in the environment; argv: MODE OUT_JSON [RUN_DIR])."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.distributed as tdist  # noqa: E402

from trainer.dist import init_distributed  # noqa: E402


def cuda_only() -> dict:
    """A gloo group registered for the cuda device type only: the device map NCCL builds."""
    ctx = init_distributed(torch.device("cpu"), timeout_s=30, backend="cuda:gloo")
    out = {"coll_device": ctx.coll_device.type}
    try:  # what the old helpers did: a CPU tensor into the group
        tdist.all_reduce(torch.zeros(1, dtype=torch.long))
        out["cpu_tensor"] = "ok"
    except RuntimeError as e:
        out["cpu_tensor"] = str(e)
    for name, call in [("sync_max", lambda: ctx.sync_max(torch.tensor([1, 0, 0]))),
                       ("broadcast_objects", lambda: ctx.broadcast_objects([{"a": 1}])),
                       ("any_flag", lambda: ctx.any_flag(True))]:
        try:
            call()
            out[name] = "ok"
        except (RuntimeError, AssertionError) as e:  # no CUDA on this machine: the tensor went to cuda
            out[name] = f"{type(e).__name__}: {e}"
    return out


def flags() -> dict:
    ctx = init_distributed(torch.device("cpu"), timeout_s=30)
    r = ctx.rank
    merged = ctx.sync_max(torch.tensor([int(r == 1), int(r == 0), 2 if r == 0 else 0], dtype=torch.int32))
    items = ctx.broadcast_list([{"line": 1}, {"line": 2}] if r == 0 else [], merged[2])
    return {"merged": merged, "items": items}


def trainer_steps(run_dir: Path) -> dict:
    """Real trainer components on each rank; count the collectives of 3 training steps, with one
    control line arriving before the second."""
    from trainer.core.config import load_config
    from trainer.build import build
    from trainer.rundir import open_run
    from trainer.train import Trainer

    ctx = init_distributed(torch.device("cpu"), timeout_s=60)
    cfg = load_config(ROOT / "configs" / "baseline.yaml",
                      ["data.synthetic_train=32", "data.synthetic_val=8", "data.image_size=32", "training.batch_size=4",
                       "model.width=8", "training.warmup_epochs=0", "training.epochs=2"])
    comp = open_run(build(cfg, torch.device("cpu"), ctx), run_dir, None, [])
    tr = Trainer(comp)
    calls: list[str] = []
    for name in ("all_reduce", "broadcast", "broadcast_object_list", "all_gather_object", "all_gather", "barrier"):
        real = getattr(tdist, name)

        def counted(*a, _real=real, _name=name, **kw):
            calls.append(_name)
            return _real(*a, **kw)

        setattr(tdist, name, counted)
    loader = iter(comp.train_loader(1, 0))
    per_step = []
    for i in range(3):
        if i == 1 and ctx.is_main:
            line = {"v": 1, "id": "set-lr", "cmd": "set", "values": {"lr": 1e-4}}
            with open(run_dir / "control.jsonl", "a") as f:
                f.write(json.dumps(line) + "\n")
        images, masks = next(loader)
        before = len(calls)
        tr.train_step(images, masks, tr.lr_for(tr.step))
        tr.step += 1
        tr._apply_control(*tr._step_flags)
        per_step.append(calls[before:])
    return {"per_step": per_step, "lr": tr.live["lr"]}


if __name__ == "__main__":
    mode, out = sys.argv[1], Path(sys.argv[2])
    res = {"cuda-only": cuda_only, "flags": flags}.get(mode)
    result = res() if res else trainer_steps(Path(sys.argv[3]))
    out.write_text(json.dumps(result))
    if tdist.is_initialized():
        tdist.destroy_process_group()
