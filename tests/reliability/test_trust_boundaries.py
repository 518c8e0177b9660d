"""Trust boundaries (docs/trust.md): configs through a safe YAML loader, checkpoints through
weights_only=True, control only from a control.jsonl owned by the trainer's user and not
writable by others (and it says so when it refuses), no value ever reaches a shell, no network
port opened (DDP under torchrun is the documented exception)."""

from __future__ import annotations

import os
import pickle
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from faults import (CONFIGS, ROOT, TINY, answers, descendants, env, events, ports_of, popen_trainer,
                    run_trainer, segwatch, send, trainer_argv, wait_for)

from app.runlib import Run

SOURCES = sorted(p for d in ("app", "trainer") for p in (ROOT / d).rglob("*.py"))
FORBIDDEN = {
    r"yaml\.(unsafe_load|full_load)\(|Loader\s*=\s*yaml\.(Loader|FullLoader|UnsafeLoader)": "an unsafe YAML loader",
    r"\bpickle\.loads?\(|\bmarshal\.loads?\(|\bdill\.": "unpickling",
    r"shell\s*=\s*True|\bos\.system\(|\bos\.popen\(|subprocess\.getoutput\(|subprocess\.getstatusoutput\(": "a shell",
    r"(?<![.\w])(eval|exec)\(": "eval/exec",
    r"\bsocket\.socket\(|\.listen\(|socketserver|http\.server|asyncio\.start_server|\bcreate_server\(": "a listening socket",
}


def _code(text: str) -> str:
    """The source without comments and docstrings/strings (crudely: enough for these patterns)."""
    text = re.sub(r'("""|\'\'\')(?:.|\n)*?\1', '""', text)
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


@pytest.mark.parametrize("pattern, what", FORBIDDEN.items(), ids=list(FORBIDDEN.values()))
def test_no_unsafe_call_in_the_source(pattern, what):
    hits = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}" for p in SOURCES
            for n, line in enumerate(_code(p.read_text()).splitlines(), 1) if re.search(pattern, line)]
    assert not hits, f"{what}:\n" + "\n".join(hits)


def test_yaml_is_read_with_safe_loaders_and_torch_load_with_weights_only():
    from trainer.core import safe_yaml

    for p in SOURCES:
        code = _code(p.read_text())
        for m in re.finditer(r"yaml\.load\((.*)", code):
            loader = re.search(r"Loader\s*=\s*(\w+)", m.group(1))
            assert loader, f"{p}: yaml.load without a Loader"
            mod = {"trainer/core/safe_yaml.py": safe_yaml}.get(str(p.relative_to(ROOT)))
            assert mod is not None and issubclass(getattr(mod, loader.group(1)), yaml.SafeLoader), f"{p}: {m.group(0)}"
        for m in re.finditer(r"torch\.load\(", code):
            call = code[m.start():code.find(")", m.end()) + 1]
            assert "weights_only=True" in call, f"{p}: {call}"


def test_a_python_tag_in_a_config_runs_nothing(tmp_path):
    bad = tmp_path / "evil.yaml"
    marker = tmp_path / "pwned"
    bad.write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    p = run_trainer(["--config", str(bad), "--run-dir", str(tmp_path / "r")], timeout=60)
    assert p.returncode == 2 and "python/object/apply" in p.stderr and not marker.exists()
    # and a hostile config.yaml inside someone's run directory, read by the monitor
    run = tmp_path / "theirs"
    run.mkdir()
    (run / "config.yaml").write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    r = Run(run)
    r.refresh()
    assert r.state.config == {} and not marker.exists()


class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickled_code_checkpoint_is_refused_on_resume(tmp_path):
    import torch

    run = tmp_path / "r"
    p = run_trainer(trainer_argv(run, "training.epochs=1"))
    assert p.returncode == 0, p.stderr
    marker = tmp_path / "pwned"
    good = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    with open(run / "checkpoints" / "last.pt", "wb") as f:
        torch.save({**good, "epoch": _Evil(str(marker))}, f, pickle_module=pickle)
    p = run_trainer(["--resume", str(run), "--device", "cpu"], timeout=120)
    assert p.returncode == 2, p.stderr
    assert "refused" in p.stderr and "weights_only=True" in p.stderr and p.stderr.count("\n") == 1, p.stderr
    assert not marker.exists()
    # a file that loads but is not a checkpoint of this trainer: named, exit 2, not a traceback
    torch.save({"model": good["model"]}, run / "checkpoints" / "last.pt")
    p = run_trainer(["--resume", str(run), "--device", "cpu"], timeout=120)
    assert p.returncode == 2 and "missing: config" in p.stderr and p.stderr.count("\n") == 1, p.stderr


def test_control_is_taken_only_from_a_file_the_trainer_trusts(tmp_path):
    run = tmp_path / "r"
    ctl = run / "control.jsonl"
    proc = popen_trainer(trainer_argv(run, "training.epochs=40", "debug.step_delay=0.1"))
    try:
        wait_for(lambda: (run / "events.jsonl").exists() and events(run, "step"), 120, "the first step")
        assert stat.S_IMODE(ctl.stat().st_mode) == 0o600
        # 1. writable by the group: refused, said once, nothing applied
        os.chmod(ctl, 0o620)
        cid = send(run, "set", values={"gamma": 1.0})
        refused = wait_for(lambda: [w for w in events(run, "warning") if w["code"] == "control_refused"], 30,
                           "the refusal")
        assert "writable by group or others" in refused[0]["message"] and "chmod 600" in refused[0]["message"]
        step = events(run, "step")[-1]["step"]
        wait_for(lambda: events(run, "step")[-1]["step"] > step + 5, 60, "steps while refusing")
        assert not answers(run, cid)
        # fixed by its owner: the trainer reads on (the owner has checked the file: docs/trust.md)
        os.chmod(ctl, 0o600)
        assert [a["type"] for a in wait_for(lambda: answers(run, cid), 30, "the answer once trusted")] == ["ack"]
        # 2. owned by another user (root can make one): refused again
        if os.getuid() == 0:
            os.chown(ctl, 65534, -1)
            cid2 = send(run, "set", values={"gamma": 1.5})
            wait_for(lambda: len([w for w in events(run, "warning") if w["code"] == "control_refused"]) == 2, 30,
                     "the second refusal")
            last = [w for w in events(run, "warning") if w["code"] == "control_refused"][-1]
            assert "owned by uid 65534" in last["message"]
            step = events(run, "step")[-1]["step"]
            wait_for(lambda: events(run, "step")[-1]["step"] > step + 5, 60, "steps while refusing")
            assert not answers(run, cid2)
            os.chown(ctl, 0, -1)
        # the monitor refuses to write into a file the trainer would ignore
        os.chmod(ctl, 0o666)
        from app.runlib.run import ControlFileError

        with pytest.raises(ControlFileError, match="writable by group or others"):
            Run(run).send("set", {"gamma": 1.2})
        os.chmod(ctl, 0o600)
        stop = send(run, "stop")
        wait_for(lambda: answers(run, stop), 30, "the stop")
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    if os.getuid() != 0:
        pytest.skip("the 'owned by another user' half needs root to chown; the group-writable half ran")


def test_no_value_reaches_a_shell(tmp_path):
    """A config path and a run name full of shell syntax go through `segwatch run` (supervisor,
    trainer) as plain arguments: the run trains, nothing is executed."""
    evil = tmp_path / "a b;$(touch pwned1)`touch pwned2`"
    evil.mkdir()
    cfg = evil / "c&&touch pwned3.yaml"
    text = (CONFIGS / "lmsa_focal.yaml").read_text().replace("name: lmsa_focal", "name: 'x;touch pwned4 $(touch pwned5)'")
    cfg.write_text(text)
    runs = tmp_path / "runs"
    sets = [x for s in [*TINY, "training.epochs=1"] for x in ("--set", s)]
    p = segwatch("run", str(cfg), *sets, "--runs-dir", str(runs), "--device", "cpu", "--headless", "--interval", "0.3",
                 timeout=300, cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    (run,) = list(runs.iterdir())
    assert run.name == "x;touch pwned4 $(touch pwned5)"
    assert events(run, "end")[-1]["reason"] == "completed"
    for where in (tmp_path, evil, runs, run, ROOT, Path.cwd()):
        assert not list(where.glob("pwned*")), where


def _listening(pids: list[int]) -> list[str]:
    return ports_of([p for p in pids if Path(f"/proc/{p}").exists()])


def test_single_process_runs_and_the_monitor_open_no_port(tmp_path):
    runs = tmp_path / "runs"
    sets = [x for s in [*TINY, "training.epochs=2", "debug.step_delay=0.3"] for x in ("--set", s)]
    mon = subprocess.Popen([sys.executable, "-m", "app", "run", str(CONFIGS / "lmsa_focal.yaml"), *sets,
                            "--runs-dir", str(runs), "--device", "cpu", "--headless", "--interval", "0.3"],
                           cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        run = runs / "lmsa_focal"
        wait_for(lambda: (run / "events.jsonl").exists() and events(run, "step"), 120, "the first step")
        trainer = int((run / "trainer.pid").read_text())
        for _ in range(5):  # the monitor, the supervisor (its own session) and the trainer, while it trains
            pids = [mon.pid, *descendants(mon.pid), trainer, *descendants(trainer)]
            supervisor = int(Path(f"/proc/{trainer}/stat").read_text().rsplit(")", 1)[1].split()[1])  # its parent
            assert b"app.supervise" in Path(f"/proc/{supervisor}/cmdline").read_bytes()
            assert _listening(pids + [supervisor]) == []
            time.sleep(0.2)
        assert events(run, "end") == [], "the run ended before the checks"
        _, err = mon.communicate(timeout=240)
        assert mon.returncode == 0, err
    finally:
        if mon.poll() is None:
            mon.send_signal(signal.SIGTERM)
            mon.wait(30)


@pytest.mark.slow
def test_ddp_sockets_are_the_documented_exception(tmp_path):
    """Under torchrun the rendezvous store (the agent) listens (torch binds every interface; no
    option restricts it); the ranks' gloo sockets are pinned to loopback."""
    run = tmp_path / "r"
    proc = popen_trainer(trainer_argv(run, "training.epochs=20", "debug.step_delay=0.1", "data.synthetic_train=64",
                                      config="baseline.yaml") + ["--nproc-per-node", "2"])
    try:
        wait_for(lambda: (run / "events.jsonl").exists() and events(run, "step"), 180, "the first DDP step")
        workers = descendants(proc.pid)
        worker_ports = _listening(workers)
        assert worker_ports and all(" 0100007F:" in p or " 00000000000000000000000001000000:" in p for p in worker_ports), worker_ports
        assert _listening([proc.pid]), "the rendezvous store is expected to listen (docs/trust.md)"
    finally:
        for p in descendants(proc.pid):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.kill()
        proc.wait(30)
