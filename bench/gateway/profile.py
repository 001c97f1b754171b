"""Profile the gateway's hot path under load with py-spy, and summarize it by function and by package.

    python -m bench.gateway.profile [--n 1500] [-c 32] [--stream off|on|both] [--ledger redis|sqlite] [--out DIR]

Starts the fake upstream, a redis-server and `ttc serve` (passthrough model `fast`, one worker),
attaches `py-spy record --format raw` to the gateway process, drives it with bench/gateway/load.py, then
prints the top functions by self time and by inclusive time (% of the gateway's on-CPU samples;
py-spy skips idle samples by default) and the share of each package. The raw collapsed stacks are
kept in --out (load them into speedscope.app, or flamegraph.pl for an SVG); the summaries are copied to
bench/results/profile/.

Needs ptrace (py-spy attaches to a running process). If that is not permitted, run it as root or
with `--cap-add SYS_PTRACE`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from contracts.environment import apply_environment_defaults
from bench.gateway.compare import TTC_KEY, Proc, base_env, free_port, ttc_config, wait_ready, write_yaml
from bench.gateway.load import LoadSpec, install_uvloop, run_load
from bench.paths import REPO, RESULTS

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
# Package attribution of a frame's file (py-spy runs with --full-filenames): first match wins.
PACKAGES = [
    (str(REPO / "gateway") + "/", "gateway"), (str(REPO / "router") + "/", "router"), (str(REPO / "strategies") + "/", "strategies"),
    ("/litellm/", "litellm"), ("/pydantic_core/", "pydantic"), ("/pydantic/", "pydantic"), ("/starlette/", "starlette"),
    ("/fastapi/", "fastapi"), ("/uvicorn/", "uvicorn"), ("/httpx/", "httpx"), ("/httpcore/", "httpcore"), ("/h11/", "h11"),
    ("/anyio/", "anyio"), ("/redis/", "redis-py"), ("/prometheus_client/", "prometheus_client"), ("/orjson/", "orjson"),
    ("/tiktoken/", "tiktoken"), ("/sqlite3/", "sqlite3"), ("/aiosqlite/", "aiosqlite"), ("/asyncio/", "asyncio (stdlib)"),
    ("/json/", "json (stdlib)"), ("/logging/", "logging (stdlib)"), ("/uvloop/", "uvloop"), ("/typer/", "typer/click (cli root)"),
]


# Stacks whose innermost Python frame is one of these are threads blocked in C (an idle executor thread
# waiting on its queue); py-spy's idle detection did not always drop them on a loaded machine.
IDLE_LEAVES = {"_worker (python3.11/concurrent/futures/thread.py)", "_worker (futures/thread.py)"}
ROOT_CHAIN = ("gateway/cli.py", "gateway/server.py")


def package_of(path: str) -> str:
    for fragment, name in PACKAGES:
        if fragment in path:
            return name
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0]
    return "stdlib/other" if path else "native/unknown"


def parse_frame(frame: str) -> tuple[str, str]:
    """('func (short file)', full file) for one py-spy raw frame; line numbers are dropped so a function is one row."""
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip(), ""
    path = m.group("file")
    if "site-packages/" in path:
        short = path.split("site-packages/")[-1]
    elif path.startswith(str(REPO) + "/"):
        short = path[len(str(REPO)) + 1:]
    else:
        short = "/".join(path.split("/")[-2:])
    return f"{m.group('func')} ({short})", path


def summarize(raw: Path, top: int = 25) -> str:
    self_t: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    gw_incl: collections.Counter[str] = collections.Counter()
    sites: collections.Counter[str] = collections.Counter()
    pkg_self: collections.Counter[str] = collections.Counter()
    pkg_incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        # py-spy's raw stacks may start with a thread/process name; keep Python frames only
        frames = [f for f in (parse_frame(x) for x in stack.split(";") if x) if f[1]]
        if not frames or frames[-1][0] in IDLE_LEAVES:
            continue
        total += count
        self_t[frames[-1][0]] += count
        pkg_self[package_of(frames[-1][1])] += count
        for name in {f[0] for f in frames}:
            incl[name] += count
        for pkg in {package_of(f[1]) for f in frames}:
            pkg_incl[pkg] += count
        # gateway/cli.py and gateway/server.py are only the process's root chain, not request handling
        gw = [i for i, f in enumerate(frames) if package_of(f[1]) == "gateway" and not f[1].endswith(ROOT_CHAIN)]
        for name in {frames[i][0] for i in gw}:  # noqa: B007
            gw_incl[name] += count
        if gw:
            # the deepest gateway frame, and which library call under it the sample is in
            i = gw[-1]
            below = frames[i + 1][0] if i + 1 < len(frames) else "[own code]"
            sites[f"{frames[i][0]} -> {below}"] += count
        else:
            sites[f"[outside the gateway's handlers: {package_of(frames[-1][1])}]"] += count
    if not total:
        return "no samples"

    def table(counter: collections.Counter[str], title: str, skip_over: float = 1.01) -> list[str]:
        out = [f"\n{title}", f"{'%':>6}  {'samples':>7}  name"]
        rows = [(n, c) for n, c in counter.most_common() if c / total <= skip_over][:top]
        for name, c in rows:
            out.append(f"{100 * c / total:6.1f}  {c:7d}  {name}")
        return out

    lines = [f"{total} on-CPU samples (% of all of them)"]
    lines += table(pkg_self, "self time by package (where the CPU actually is)")
    lines += table(pkg_incl, "inclusive time by package (a sample counts once per package on its stack)")
    lines += table(self_t, "top functions by self time")
    lines += table(gw_incl, "gateway functions by inclusive time")
    lines += table(sites, "samples by deepest gateway frame -> the call under it")
    lines += table(incl, "top functions by inclusive time (frames above 60% = the server's root chain, left out)", skip_over=0.6)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1500)
    parser.add_argument("-c", "--concurrency", type=int, default=32)
    parser.add_argument("--stream", choices=["off", "on", "both"], default="both")
    parser.add_argument("--ledger", choices=["redis", "sqlite"], default="redis")
    parser.add_argument("--model", default="fast", help="fast (passthrough) or auto (needs --artifact)")
    parser.add_argument("--artifact", type=Path, default=None)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--nonblocking", action="store_true",
                        help="do not pause the gateway to sample (less overhead; but on a loaded machine it read stale frames: "
                             "one run put 25%% of samples on a single line of a pydantic validator)")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "ttc-profile",
                        help="raw collapsed stacks go here (large); the summaries are also copied to --summaries")
    parser.add_argument("--summaries", type=Path, default=RESULTS / "profile")
    args = parser.parse_args(argv)
    if shutil.which("py-spy") is None:
        print("py-spy not found: pip install py-spy", file=sys.stderr)
        return 2
    install_uvloop()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ttc-profile-"))
    env = base_env()
    env["TTC_CONFIG_DIR"] = str(work / "cfgdir")
    procs: list[Proc] = []
    redis_srv = None
    try:
        up_port = free_port()
        upstream = Proc("upstream", [sys.executable, "-m", "testkit.fake_upstream", "--port", str(up_port), "--no-record"], env, work)
        procs.append(upstream)
        up_url = f"http://127.0.0.1:{up_port}"
        wait_ready(f"{up_url}/_requests", upstream.proc, 30)
        if args.ledger == "redis":
            from testkit.redis_server import RedisServer

            redis_srv = RedisServer().start()
            ledger = {"redis_url": redis_srv.url}
        else:
            ledger = {"path": str(work / "ledger.sqlite3")}
        port = free_port()
        cfg = write_yaml(work / "ttc.yaml", ttc_config(up_url, ledger, 16, args.artifact))
        gw = Proc("gateway", [sys.executable, "-m", "gateway.cli", "serve", "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port),
                              "--workers", "1"], env, work)
        procs.append(gw)
        url = f"http://127.0.0.1:{port}"
        wait_ready(f"{url}/health/ready", gw.proc, 180)
        for stream in {"off": [False], "on": [True], "both": [False, True]}[args.stream]:
            tag = f"{args.model}-{args.ledger}-{'stream' if stream else 'nostream'}-c{args.concurrency}"
            spec = dict(url=url, model=args.model, key=TTC_KEY, concurrency=args.concurrency, stream=stream, time_limit_s=60.0)
            asyncio.run(run_load(LoadSpec(n=100, **spec)))  # warm-up, not profiled
            raw = args.out / f"{tag}.txt"
            spy = subprocess.Popen(["py-spy", "record", "--format", "raw", "--rate", str(args.rate), *(["--nonblocking"] if args.nonblocking else []), "--full-filenames", "-o", str(raw),
                                    "-p", str(gw.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(1.0)
            if spy.poll() is not None:
                print(f"py-spy failed to attach: {spy.stderr.read().decode(errors='replace') if spy.stderr else ''}", file=sys.stderr)
                return 1
            result = asyncio.run(run_load(LoadSpec(n=args.n, **spec)))
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
            print(f"\n=== {tag}: {result['ok']} ok, {result['errors']} errors, {result['rps']:.0f} req/s, p50 {result['p50_ms']:.1f} ms")
            if raw.exists():
                report = summarize(raw, args.top)
                (args.out / f"{tag}.summary.txt").write_text(report + "\n")
                args.summaries.mkdir(parents=True, exist_ok=True)
                (args.summaries / f"{tag}.summary.txt").write_text(f"{result['ok']} requests at c={args.concurrency}, "
                                                                    f"{result['rps']:.0f} req/s under py-spy\n{report}\n")
                print(report)
            else:
                print("py-spy wrote no profile")
    finally:
        for p in reversed(procs):
            p.stop()
        if redis_srv is not None:
            redis_srv.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    apply_environment_defaults()
    sys.exit(main())
