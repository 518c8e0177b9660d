"""A one-machine SLURM cluster for tests, from generated configs in a folder.

    python tests/slurm/cluster.py up DIR     # start it (prints the SLURM_CONF to export)
    python tests/slurm/cluster.py down DIR   # stop what `up` started, by its pid files

Starts munged (unless one already answers), MariaDB, slurmdbd, slurmctld and slurmd, in that
order, each with its pid file, config, state and log under DIR; stops them in reverse order.
Everything listens on free local ports and a socket in DIR: nothing under /etc or /run is
changed (except /run/munge, which munged needs). Needs root and the Debian packages
``slurm-wlm munge slurmdbd mariadb-server`` (docs/slurm.md, "Tests"). Pitfalls it handles are
in ../shared/slurm-testbed.md.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

CLUSTER = "segwatchtest"
PARTITION = "debug"
DAEMONS = ("mariadbd", "slurmdbd", "slurmctld", "slurmd")  # start order; munged comes first
PACKAGES = "slurm-wlm munge slurmdbd mariadb-server"
NEEDED = ("munged", "munge", "unmunge", "mariadbd", "mariadb-install-db", "mariadb", "slurmdbd", "slurmctld",
          "slurmd", "sbatch", "squeue", "sacct", "sacctmgr", "scancel", "sinfo")


class ClusterError(RuntimeError):
    pass


def missing() -> str | None:
    """Why a cluster cannot be started here, or None."""
    if os.geteuid() != 0:
        return "the test cluster needs root (slurmd runs jobs as their user; SlurmUser=root)"
    gone = [n for n in NEEDED if not _which(n)]
    if gone:
        return f"not installed: {', '.join(gone)} (apt-get install -y {PACKAGES})"
    return None


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mem_mb() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 2048


def _wait(what: str, check, deadline_s: float, log: Path | None = None) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.2)
    tail = ""
    if log is not None and log.exists():
        tail = "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    raise ClusterError(f"{what} did not come up within {deadline_s:.0f} s{tail}")


class Cluster:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        self.conf = self.root / "etc" / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.host = socket.gethostname().split(".")[0]

    # -- helpers -----------------------------------------------------------------------
    def pidfile(self, name: str) -> Path:
        return self.root / "run" / f"{name}.pid"

    def log(self, name: str) -> Path:
        return self.root / "log" / f"{name}.log"

    def run(self, *argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        p = subprocess.run(list(argv), env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise ClusterError(f"{' '.join(argv)}: exit {p.returncode}: {p.stderr.strip() or p.stdout.strip()}")
        return p

    def _spawn(self, name: str, argv: list[str], user: str | None = None) -> int:
        out = open(self.log(name + ".out"), "ab")
        try:
            p = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                 start_new_session=True, user=user)
        finally:
            out.close()
        self.pidfile(name).write_text(f"{p.pid}\n")
        return p.pid

    # -- configs -------------------------------------------------------------------------
    def write_configs(self) -> None:
        for d in ("etc", "run", "log", "state", "spool", "db"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        self.ports = {"db": _free_port(), "dbd": _free_port(), "ctld": _free_port(), "slurmd": _free_port()}
        cpus = os.cpu_count() or 1
        mem = max(256, int(_mem_mb() * 0.8))
        r = self.root
        self.conf.write_text(f"""\
ClusterName={CLUSTER}
SlurmctldHost={self.host}
SlurmUser=root
SlurmctldPort={self.ports['ctld']}
SlurmdPort={self.ports['slurmd']}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/run/slurmctld.daemon.pid
SlurmdPidFile={r}/run/slurmd.daemon.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
KillWait=5
# a requeued job waits cred_expire seconds before it starts again (default 120: too long for tests)
MinJobAge=300
AuthInfo=cred_expire=30
InactiveLimit=0
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost={self.host}
AccountingStoragePort={self.ports['dbd']}
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
NodeName={self.host} CPUs={cpus} RealMemory={mem} State=UNKNOWN
PartitionName={PARTITION} Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
""")
        dbd = self.conf.parent / "slurmdbd.conf"  # slurmdbd has no -f: it looks next to SLURM_CONF
        dbd.write_text(f"""\
AuthType=auth/munge
DbdHost={self.host}
DbdPort={self.ports['dbd']}
SlurmUser=root
PidFile={r}/run/slurmdbd.daemon.pid
LogFile={r}/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={self.ports['db']}
StorageUser=slurm
StoragePass=slurmtest
StorageLoc=slurm_acct_db
""")
        dbd.chmod(0o600)

    # -- up / down -----------------------------------------------------------------------
    def munge_ok(self) -> bool:
        try:
            m = subprocess.run(["munge", "-n"], capture_output=True, timeout=10)
            if m.returncode != 0:
                return False
            u = subprocess.run(["unmunge"], input=m.stdout, capture_output=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return False
        return u.returncode == 0

    def start_munge(self) -> None:
        if self.munge_ok():
            return  # the machine's own munged (or one left by an earlier run): use it
        run = Path("/run/munge")
        run.mkdir(parents=True, exist_ok=True)
        pw = pwd.getpwnam("munge")
        os.chown(run, pw.pw_uid, pw.pw_gid)
        for d in (Path("/var/log/munge"), Path("/var/lib/munge")):
            if d.exists():
                os.chown(d, pw.pw_uid, pw.pw_gid)
        self._spawn("munged", [_which("munged"), "--foreground"], user="munge")
        _wait("munged", self.munge_ok, 30, self.log("munged.out"))

    def start_db(self) -> None:
        db = self.root / "db"
        sock = self.root / "run" / "mysqld.sock"
        pw = pwd.getpwnam("mysql")
        for d in (db, self.root / "run"):
            os.chown(d, pw.pw_uid, pw.pw_gid)
        self.run(_which("mariadb-install-db"), "--user=mysql", f"--datadir={db}", "--auth-root-authentication-method=socket",
                 "--skip-test-db", timeout=180)
        self._spawn("mariadbd", [_which("mariadbd"), "--no-defaults", "--user=mysql", f"--datadir={db}",
                                 f"--socket={sock}", f"--port={self.ports['db']}", "--bind-address=127.0.0.1",
                                 f"--pid-file={self.root}/run/mariadbd.daemon.pid", "--innodb-buffer-pool-size=32M",
                                 f"--log-error={self.log('mariadbd')}"])

        def sql_ok() -> bool:
            return self.run("mariadb", f"--socket={sock}", "-e", "SELECT 1", check=False).returncode == 0

        _wait("mariadbd", sql_ok, 60, self.log("mariadbd"))
        sql = ("CREATE DATABASE IF NOT EXISTS slurm_acct_db; "
               "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurmtest'; "
               "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmtest'; "
               "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; "
               "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;")
        self.run("mariadb", f"--socket={sock}", "-e", sql)

    def up(self) -> "Cluster":
        why = missing()
        if why:
            raise ClusterError(why)
        self.write_configs()
        self.start_munge()
        self.start_db()
        self._spawn("slurmdbd", [_which("slurmdbd"), "-D"])
        _wait("slurmdbd", lambda: self.run("sacctmgr", "-n", "list", "cluster", check=False).returncode == 0,
              60, self.log("slurmdbd"))
        self.run("sacctmgr", "-i", "add", "cluster", CLUSTER, check=False)
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-i", "-f", str(self.conf)])
        _wait("slurmctld", lambda: self.run("scontrol", "ping", check=False).stdout.count("UP") > 0, 60,
              self.log("slurmctld"))
        self._spawn("slurmd", [_which("slurmd"), "-D", "-f", str(self.conf), "-N", self.host])

        def idle() -> bool:
            out = self.run("sinfo", "-h", "-o", "%t", check=False).stdout.split()
            return bool(out) and all(s in ("idle", "mix", "alloc") for s in out)

        _wait("slurmd (node idle in sinfo)", idle, 60, self.log("slurmd"))
        return self

    def down(self) -> None:
        for name in (*reversed(DAEMONS), "munged"):
            pf = self.pidfile(name)
            try:
                pid = int(pf.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            _stop(pid)
            pf.unlink(missing_ok=True)


def _stop(pid: int, grace: float = 15.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    end = time.monotonic() + grace
    while time.monotonic() < end:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)  # our own child: reap it
            if done:
                return
        except ChildProcessError:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("up", "down"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    c = Cluster(argv[1])
    if argv[0] == "up":
        try:
            c.up()
        except ClusterError as e:
            print(f"cluster: {e}", file=sys.stderr)
            c.down()
            return 1
        print(f"export SLURM_CONF={c.conf}")
    else:
        c.down()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
