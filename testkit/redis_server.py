"""Real `redis-server` processes for tests and benchmarks (never fakeredis).

Standalone::

    with RedisServer() as srv:                 # free loopback port, tmp dir, --save "" --appendonly no
        client = redis.Redis.from_url(srv.url)

    srv = RedisServer(args=RedisServer.PERSISTENT_ARGS)   # --appendonly yes --appendfsync always
    srv.start(); srv.stop(); srv.start()       # same port, same dir: the AOF is reloaded
    srv.stop(kill=True)                        # SIGKILL instead of a clean SHUTDOWN
    srv.close()                                # stop + delete the tmp dir it created

Cluster (3 masters, no replicas, slots spread by ``redis-cli --cluster create``)::

    with RedisClusterServer(masters=3) as cluster:
        cluster.url        # "redis+cluster://127.0.0.1:<port of node 0>" (the ledger's scheme)
        cluster.nodes      # the RedisServer of each master

Servers get SIGTERM if the process that started them dies (Linux), so killed test runs leave
no orphans. ``start()`` returns only once the server answers PING (and, for a cluster, once every node
reports ``cluster_state:ok``); it raises ``RuntimeError`` with the server log tail otherwise.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

HOST = "127.0.0.1"


def _bindable(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(*, cluster_bus: bool = False, host: str = HOST) -> int:
    """A port that is free now (and, with ``cluster_bus``, whose +10000 bus port is free too).

    Picked at random below the Linux ephemeral range so that parallel test runs and outgoing
    connections rarely collide.
    """
    for _ in range(500):
        port = random.randint(20000, 32000)
        if _bindable(port, host) and (not cluster_bus or _bindable(port + 10000, host)):
            return port
    raise RuntimeError("no free port found")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGTERM the server when the process that started it dies, so a test run
    killed by a timeout or Ctrl-C does not leave orphaned redis-servers behind."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _send(host: str, port: int, *command: str, timeout: float = 1.0) -> str:
    """Send one RESP command and return the raw reply (enough for readiness checks)."""
    payload = f"*{len(command)}\r\n" + "".join(f"${len(c.encode())}\r\n{c}\r\n" for c in command)
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(payload.encode())
        chunks = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = s.recv(65536)
            if not data:
                break
            chunks += data
            if chunks.startswith((b"+", b"-", b":")) and chunks.endswith(b"\r\n"):
                break
            if chunks.startswith(b"$"):
                header, _, rest = chunks.partition(b"\r\n")
                if len(rest) >= int(header[1:]) + 2:
                    break
        return chunks.decode(errors="replace")


class RedisServer:
    DEFAULT_ARGS: tuple[str, ...] = ("--save", "", "--appendonly", "no")
    PERSISTENT_ARGS: tuple[str, ...] = ("--save", "", "--appendonly", "yes", "--appendfsync", "always")

    def __init__(
        self,
        args: Sequence[str] = DEFAULT_ARGS,
        *,
        port: int | None = None,
        dir: str | Path | None = None,
        host: str = HOST,
        startup_timeout_s: float = 15.0,
        cluster_bus: bool = False,
        die_with_parent: bool = True,
    ) -> None:
        self.host = host
        self.port = port if port is not None else free_port(cluster_bus=cluster_bus, host=host)
        self._owns_dir = dir is None
        self.dir = Path(dir) if dir is not None else Path(tempfile.mkdtemp(prefix="ttc-redis-"))
        self.args = tuple(args)
        self.startup_timeout_s = startup_timeout_s
        # Linux ties the server's life to the *thread* that started it: pass False when starting
        # it from a short-lived thread.
        self.die_with_parent = die_with_parent and sys.platform == "linux"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.dir / "redis.log"

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ping(self) -> bool:
        try:
            return _send(self.host, self.port, "PING").startswith("+PONG")
        except OSError:
            return False

    def command(self, *args: str) -> str:
        """Raw reply of one command (for INFO, CLUSTER INFO... in tests)."""
        return _send(self.host, self.port, *args, timeout=5.0)

    def start(self) -> RedisServer:
        if self.is_running():
            return self
        self.dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            "redis-server",
            "--bind", self.host,
            "--port", str(self.port),
            "--dir", str(self.dir),
            "--logfile", str(self.log_path),
            "--daemonize", "no",
            *self.args,
        ]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
            preexec_fn=_die_with_parent if self.die_with_parent else None,
        )
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}:\n{self._log_tail()}")
            if self.ping():  # a server still loading its AOF answers -LOADING, not +PONG
                return self
            time.sleep(0.02)
        self.stop(kill=True)
        raise RuntimeError(f"redis-server on port {self.port} not ready in {self.startup_timeout_s}s:\n{self._log_tail()}")

    def stop(self, *, kill: bool = False) -> None:
        """Stop the process; the port and dir are kept so ``start()`` brings the same server back."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()  # redis-server shuts down cleanly on SIGTERM
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> RedisServer:
        self.stop()
        return self.start()

    def close(self) -> None:
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class RedisClusterServer:
    """``masters`` cluster-enabled redis-servers on loopback joined with ``redis-cli --cluster create``."""

    def __init__(self, masters: int = 3, *, startup_timeout_s: float = 30.0) -> None:
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        self.dir = Path(tempfile.mkdtemp(prefix="ttc-redis-cluster-"))
        self.startup_timeout_s = startup_timeout_s
        self.nodes: list[RedisServer] = []
        for i in range(masters):
            node_dir = self.dir / f"node{i}"
            self.nodes.append(
                RedisServer(
                    args=(
                        *RedisServer.DEFAULT_ARGS,
                        "--cluster-enabled", "yes",
                        "--cluster-config-file", str(node_dir / "nodes.conf"),
                        "--cluster-node-timeout", "5000",
                    ),
                    dir=node_dir,
                    cluster_bus=True,
                )
            )

    @property
    def url(self) -> str:
        return f"redis+cluster://{HOST}:{self.nodes[0].port}"

    def start(self) -> RedisClusterServer:
        try:
            for node in self.nodes:
                node.start()
            out = subprocess.run(
                [
                    "redis-cli", "--cluster", "create",
                    *(f"{n.host}:{n.port}" for n in self.nodes),
                    "--cluster-replicas", "0", "--cluster-yes",
                ],
                capture_output=True,
                text=True,
                timeout=self.startup_timeout_s,
            )
            if out.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed:\n{out.stdout}\n{out.stderr}")
            deadline = time.monotonic() + self.startup_timeout_s
            while time.monotonic() < deadline:
                if all("cluster_state:ok" in n.command("CLUSTER", "INFO") for n in self.nodes):
                    return self
                time.sleep(0.1)
            raise RuntimeError("cluster did not reach cluster_state:ok")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisClusterServer:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
