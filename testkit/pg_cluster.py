"""A private PostgreSQL cluster (`initdb` + `pg_ctl`) that a test may stop and start again.

The shared server on 127.0.0.1:5432 cannot be stopped without stopping every other test's
database; this cluster belongs to one test. `initdb` refuses to run as root, so as root every
server command runs as the `postgres` user through `runuser`, in a folder under /tmp that user
owns. Trust auth on 127.0.0.1 only; the socket lives in the data folder. The binaries are found
in `TTC_TEST_PG_BIN`, else the newest /usr/lib/postgresql/*/bin (15 on these machines)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from testkit.servers import free_port

USER = "postgres"


class ClusterUnavailable(RuntimeError):
    pass


def bin_dir() -> Path:
    named = os.environ.get("TTC_TEST_PG_BIN")
    found = [Path(named)] if named else sorted((Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")),
                                               key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    for candidate in reversed(found):
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    raise ClusterUnavailable(
        "no PostgreSQL server binaries (initdb, pg_ctl) found in /usr/lib/postgresql/*/bin or TTC_TEST_PG_BIN: install "
        "PostgreSQL 15 (`apt-get install postgresql-15`) or set TTC_TEST_PG_BIN to the folder holding initdb and pg_ctl.")


def as_postgres(args: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return args  # already an unprivileged user: initdb runs as it
    runuser = shutil.which("runuser")
    if runuser is None:
        raise ClusterUnavailable("running as root, and `runuser` is missing: initdb refuses root, so the private "
                                 "PostgreSQL cluster needs `runuser` (util-linux) to run it as the postgres user.")
    return [runuser, "-u", USER, "--", *args]


class PgCluster:
    """`with PgCluster() as cluster:` a running server at `cluster.url`; `stop()`/`start()` at will."""

    def __init__(self) -> None:
        self.bin = bin_dir()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="ttc-pg-"))
        self.data = self.root / "data"
        self.url = f"postgresql://{USER}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout_s: float = 120.0) -> None:
        try:
            done = subprocess.run(as_postgres([str(self.bin / args[0]), *args[1:]]), capture_output=True, text=True,
                                  timeout=timeout_s, cwd=self.root)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise ClusterUnavailable(f"{args[0]} failed: {error}") from error
        if done.returncode != 0:
            raise ClusterUnavailable(f"{' '.join(args[:2])} exited {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")

    def __enter__(self) -> PgCluster:
        if os.geteuid() == 0:
            try:
                shutil.chown(self.root, USER, USER)
            except (LookupError, OSError) as error:
                raise ClusterUnavailable(f"cannot hand {self.root} to the '{USER}' user ({error}): the private PostgreSQL "
                                         "cluster runs as that user, since initdb refuses root.") from error
        self._run("initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
        self.start()
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.data / "server.log"), "-w", "start")

    def stop(self) -> None:
        """`-m fast`: open sessions are disconnected, as in a real restart."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def __exit__(self, *exc: object) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
