"""SLURM options: the command-line flags and the user's defaults file (no submitit, no torch).

Defaults come from ``$XDG_CONFIG_HOME/segwatch/slurm.yaml`` (``~/.config/segwatch/slurm.yaml``;
``$SEGWATCH_SLURM_CONFIG`` names another file); flags on the command line win. Keys::

    partition: gpu            # --partition
    time: "12:00:00"          # --time: minutes, or SLURM's [D-]HH:MM[:SS]
    gpus_per_run: 1           # --gpus-per-run (per node)
    nodes: 1                  # --nodes
    nproc_per_node: 1         # --nproc-per-node (trainer processes per node, DDP)
    cpus_per_task: 4          # CPUs for each trainer process
    account: mylab            # --account
    sbatch_args: ["--qos=normal", "--exclusive"]   # --sbatch-arg, repeatable

A bad file, key or value is a one-line error naming the file, the key and what is allowed.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

_TIME = re.compile(r"^(\d+|(\d+-)?\d{1,2}(:\d{2}){0,2}|\d+-\d{1,2})$")
_SBATCH = re.compile(r"^--([a-z][a-z0-9-]*)(=(.+))?$", re.S)
#: sbatch options segwatch sets itself: the logs must stay in the run directory
RESERVED = ("output", "error", "open-mode", "wrap", "array", "job-name", "parsable", "chdir")


class SlurmOptionError(ValueError):
    pass


@dataclass
class SlurmOptions:
    partition: str | None = None
    time: str | None = None
    gpus_per_run: int | None = None
    nodes: int = 1
    nproc_per_node: int | None = None
    cpus_per_task: int | None = None
    account: str | None = None
    sbatch_args: list[str] = field(default_factory=list)

    def sbatch_parameters(self) -> dict[str, Any]:
        """--sbatch-arg list as submitit's additional_parameters ({"qos": "normal", "exclusive": True})."""
        out: dict[str, Any] = {}
        for a in self.sbatch_args:
            m = _SBATCH.match(a)
            # submitit writes "_" as "-": the same spelling as its own keys, so --sbatch-arg wins over them
            out[m.group(1).replace("-", "_")] = m.group(3) if m.group(2) else True
        return out


def config_path(env: dict | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("SEGWATCH_SLURM_CONFIG"):
        return Path(env["SEGWATCH_SLURM_CONFIG"])
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return base / "segwatch" / "slurm.yaml"


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("SLURM (with --launcher slurm; defaults from ~/.config/segwatch/slurm.yaml)")

    def add(flag: str, **kw: Any) -> None:
        if flag not in p._option_string_actions:
            g.add_argument(flag, **kw)

    add("--partition", default=None, help="SLURM partition")
    add("--time", dest="slurm_time", default=None, metavar="LIMIT",
        help="time limit per run: minutes or [D-]HH:MM[:SS]")
    add("--gpus-per-run", type=int, default=None, metavar="N", help="GPUs per node for each run")
    add("--nodes", type=int, default=None, metavar="N", help="nodes per run (default 1)")
    add("--nproc-per-node", dest="slurm_nproc", type=int, default=None, metavar="M",
        help="trainer processes per node (DDP; sets training.nproc_per_node)")
    add("--account", default=None, help="SLURM account to charge")
    add("--sbatch-arg", dest="sbatch_args", action="append", default=None, metavar="ARG",
        help="any other sbatch option as --key=value or --flag (repeatable), e.g. --sbatch-arg=--qos=high")


def _check(src: str, key: str, value: Any) -> Any:
    def bad(allowed: str) -> SlurmOptionError:
        return SlurmOptionError(f"{src}: {key}: {value!r} is not allowed ({allowed})")

    if key in ("partition", "account"):
        if not isinstance(value, str) or not re.match(r"^[A-Za-z0-9_.,+-]+$", value):
            raise bad("a name: letters, digits, '_', '.', ',', '+' or '-'")
        return value
    if key == "time":
        v = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
        if not _TIME.match(v) or v in ("0",):
            raise bad("minutes, or [D-]HH:MM[:SS], e.g. 90 or 12:00:00")
        return v
    if key in ("gpus_per_run", "nodes", "nproc_per_node", "cpus_per_task"):
        low = 0 if key == "gpus_per_run" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise bad(f"an integer >= {low}")
        return value
    if key == "sbatch_args":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise bad("a list of sbatch options such as --qos=high")
        for a in value:
            m = _SBATCH.match(a) if isinstance(a, str) else None
            if m is None:
                raise SlurmOptionError(f"{src}: sbatch_args: {a!r} is not allowed (write each option as --key=value or --flag)")
            if m.group(1) in RESERVED:
                raise SlurmOptionError(f"{src}: sbatch_args: {a!r}: segwatch sets --{m.group(1)} itself "
                                       f"(reserved: {', '.join(RESERVED)})")
        return list(value)
    raise SlurmOptionError(f"{src}: unknown key {key!r} (allowed: {', '.join(f.name for f in fields(SlurmOptions))})")


def load_defaults(path: Path | None = None) -> dict[str, Any]:
    path = config_path() if path is None else path
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise SlurmOptionError(f"{path}: cannot read it: {e.strerror or e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SlurmOptionError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SlurmOptionError(f"{path}: expected a mapping of keys such as partition, time, account")
    return {k: _check(str(path), str(k), v) for k, v in data.items()}


def from_args(args: argparse.Namespace | None) -> SlurmOptions:
    """The defaults file, then the command line's flags over it."""
    values = load_defaults()
    cli = {
        "partition": getattr(args, "partition", None), "time": getattr(args, "slurm_time", None),
        "gpus_per_run": getattr(args, "gpus_per_run", None), "nodes": getattr(args, "nodes", None),
        "nproc_per_node": getattr(args, "slurm_nproc", None), "account": getattr(args, "account", None),
    }
    for k, v in cli.items():
        if v is not None:
            values[k] = _check(f"--{k.replace('_', '-').replace('gpus-per-run', 'gpus-per-run')}", k, v)
    extra = getattr(args, "sbatch_args", None)
    if extra:
        values["sbatch_args"] = values.get("sbatch_args", []) + _check("--sbatch-arg", "sbatch_args", list(extra))
    return SlurmOptions(**values)
