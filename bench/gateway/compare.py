"""ttc-gateway side by side with LiteLLM proxy, on one machine, in one run (issue 7).

    python -m bench.gateway.compare                 # full run (< 15 min on 2 cores), writes bench/RESULTS.md
    python -m bench.gateway.compare --quick         # smoke run: small N, prints only (add --results to write)
    python -m bench.gateway.compare --cases direct ttc-redis litellm --concurrency 1 32

Starts the fake upstream (``python -m testkit.fake_upstream``, its own process), a redis-server (no persistence), and then,
one after the other, each server under test on the same upstream:

- ``direct``: the load generator straight to the fake upstream (the baseline);
- ``ttc-sqlite`` / ``ttc-redis``: ttc-gateway passthrough (explicit model, no routing, no strategy)
  with the embedded SQLite ledger / the Redis ledger, one worker; ``ttc-redis-w2``: two workers;
- ``ttc-auto``: ``model: "auto"`` with a router artifact trained here on a few hundred RouteLLM
  GSM8K rows (cached under ~/.cache/ttc-bench), Redis ledger, one worker; the artifact uses the
  router's serving featurizer, the static embedding distilled from MiniLM (``--router-featurizer``);
  ``ttc-auto-minilm`` is the same with MiniLM through torch, to show what that forward pass costs;
- ``litellm``: LiteLLM proxy ``litellm[proxy]==1.106.2`` from its own venv (created on first use
  under ~/.cache/ttc-bench/litellm-venv), one worker, no DB, no callbacks,
  ``LITELLM_LOCAL_MODEL_COST_MAP=True``.

For each it sends distinct prompts at each concurrency, stream off and on, and records latency
percentiles, RPS, and CPU from /proc: the server's whole process tree (uvicorn workers included),
Redis and the load generator itself. Overhead = the gateway's latency minus direct's at the same
concurrency and stream mode. Ratios matter; absolute times move between runs.

Each server's log goes to a temporary work dir, removed at the end unless ``TTC_BENCH_KEEP_WORK=1``.

While one case is measured, the other servers are paused with SIGSTOP (``--no-isolate`` turns
that off): on 2 cores, the idle timers and background loops of six other servers otherwise add
noise to every c=1 latency, and most to the sub-millisecond ones.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.environment import apply_environment_defaults
from bench.gateway.load import LoadSpec, install_uvloop, run_load
from bench.paths import DATA, REPO, RESULTS_MD

CACHE = Path(os.environ.get("TTC_BENCH_CACHE", Path.home() / ".cache" / "ttc-bench"))
LITELLM_VERSION = "1.106.2"
TTC_KEY = "sk-ttc-bench-key-0001"
LITELLM_KEY = "sk-litellm-bench-master"
# The RouteLLM GSM8K set's two models; the gateway maps its own names onto them with router_name.
ROUTER_MODELS = {"strong": "gpt-4-1106-preview", "weak": "mistralai/Mixtral-8x7B-Instruct-v0.1"}
DEFAULT_CASES = ["direct", "ttc-sqlite", "ttc-redis", "ttc-redis-w2", "ttc-auto", "ttc-auto-minilm", "litellm"]
AUTO_CASES = ("ttc-auto", "ttc-auto-minilm")
RESULTS_BEGIN = "<!-- bench/gateway/compare.py: begin -->"
RESULTS_END = "<!-- bench/gateway/compare.py: end -->"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- /proc CPU accounting

def parse_stat(text: str) -> tuple[int, int, float]:
    """(pid, ppid, utime+stime seconds) from the text of /proc/<pid>/stat.

    The command name (field 2) is in parentheses and may contain spaces, so split after the last ')'.
    """
    pid = int(text.split(" ", 1)[0])
    rest = text[text.rindex(")") + 2:].split()
    # rest[0] is field 3 (state); utime and stime are fields 14 and 15
    ppid, utime, stime = int(rest[1]), int(rest[11]), int(rest[12])
    return pid, ppid, (utime + stime) / CLK_TCK


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (ppid, utime+stime seconds) of every live process."""
    procs: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                pid, ppid, cpu = parse_stat(f.read())
        except (OSError, ValueError, IndexError):
            continue
        procs[pid] = (ppid, cpu)
    return procs


def _subtree_cpu_s(procs: dict[int, tuple[int, float]], root: int) -> float:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        if pid in procs:
            total += procs[pid][1]
        stack.extend(children.get(pid, []))
    return total


def tree_cpu_s(root: int) -> float:
    """utime+stime of `root` and all its live descendants (uvicorn workers are children)."""
    return _subtree_cpu_s(_proc_table(), root)


def worker_cpu_s(root: int) -> dict[int, float]:
    """CPU seconds of each direct child's subtree: per uvicorn worker under its supervisor."""
    procs = _proc_table()
    return {pid: _subtree_cpu_s(procs, pid) for pid, (ppid, _) in procs.items() if ppid == root}


def worker_shares(before: dict[int, float], after: dict[int, float]) -> list[float]:
    """Each worker's share of the CPU the workers used between two readings, largest first."""
    used = {pid: after[pid] - before.get(pid, 0.0) for pid in after}
    total = sum(used.values())
    return sorted((u / total for u in used.values()), reverse=True) if total > 0 and len(used) > 1 else []


# ---------------------------------------------------------------- processes

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float, headers: dict[str, str] | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before {url} answered")
        try:
            r = httpx.get(url, timeout=2.0, headers=headers)
            if r.status_code < 500:
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f}s ({last})")


@contextmanager
def paused(process_groups: list[int]) -> Iterator[None]:
    """SIGSTOP these process groups (each server runs in its own session) for the duration."""
    stopped = []
    try:
        for pgid in process_groups:
            try:
                os.killpg(pgid, signal.SIGSTOP)
                stopped.append(pgid)
            except ProcessLookupError:
                pass
        yield
    finally:
        for pgid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGCONT)


class Proc:
    """A server subprocess in its own process group, with its log in the work dir."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, cwd=str(REPO))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)
        self.log.close()


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_", "LITELLM_", "OPENAI_"))}
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


# ---------------------------------------------------------------- configs

def fast_model(name: str, upstream: str, max_tokens: int, **extra: Any) -> dict[str, Any]:
    return {"name": name, "litellm_params": {"model": f"openai/{name}", "api_base": f"{upstream}/v1", "api_key": "fake"},
            "price": {"input_per_1m": 1.0, "output_per_1m": 2.0}, "max_output_tokens": max_tokens, "max_retries": 0, **extra}


def ttc_config(upstream: str, ledger: dict[str, Any], max_tokens: int, artifact: Path | None) -> dict[str, Any]:
    from gateway.auth import hash_key

    models = [fast_model("fast", upstream, max_tokens)]
    if artifact is not None:
        models += [fast_model(name, upstream, max_tokens, router_name=router_name) for name, router_name in ROUTER_MODELS.items()]
    config: dict[str, Any] = {
        "models": models,
        # Budgets that never run out, so that every request reserves and settles in the ledger.
        "tenants": [{"id": "bench", "api_key_hashes": [hash_key(TTC_KEY)], "allowed_models": ["*"],
                     "budgets": [{"window": "day", "limit_usd": 1e9}, {"window": "month", "limit_usd": 1e9}]}],
        "ledger": ledger,
        "server": {"watch_interval_s": 0},
    }
    if artifact is not None:
        config["router"] = {"artifact": str(artifact)}
    return config


def litellm_config(upstream: str) -> dict[str, Any]:
    return {
        "model_list": [{"model_name": "fast", "litellm_params": {"model": "openai/fast", "api_base": f"{upstream}/v1", "api_key": "fake"}}],
        "general_settings": {"master_key": LITELLM_KEY},
        "litellm_settings": {"telemetry": False, "callbacks": [], "success_callback": [], "failure_callback": []},
    }


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ---------------------------------------------------------------- LiteLLM venv and router artifact

def litellm_venv(log: Callable[[str], None]) -> Path:
    """The venv with litellm[proxy]==1.106.2, created once and reused. Returns its `litellm` binary."""
    venv = CACHE / "litellm-venv"
    exe = venv / "bin" / "litellm"
    py = venv / "bin" / "python"
    if exe.exists():
        check = subprocess.run([str(py), "-c", "import importlib.metadata as m; print(m.version('litellm'))"], capture_output=True, text=True)
        if check.stdout.strip() == LITELLM_VERSION:
            return exe
    log(f"creating {venv} with litellm[proxy]=={LITELLM_VERSION} (once; a few minutes)")
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    result = subprocess.run([str(py), "-m", "pip", "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"], capture_output=True, text=True)
    if result.returncode != 0 or not exe.exists():
        raise RuntimeError(f"pip install litellm[proxy]=={LITELLM_VERSION} failed:\n{result.stderr[-2000:]}")
    return exe


def venv_version(exe: Path, package: str) -> str:
    py = exe.parent / "python"
    r = subprocess.run([str(py), "-c", f"import importlib.metadata as m; print(m.version({package!r}))"], capture_output=True, text=True)
    return r.stdout.strip() or "?"


def router_artifact(featurizer: str, max_prompts: int, log: Callable[[str], None]) -> Path:
    """A tiny router artifact over the two RouteLLM GSM8K models, trained once and cached."""
    base = CACHE / f"router-gsm8k-{max_prompts}"
    art = base / f"artifact-{featurizer}"
    if (art / "manifest.json").exists():
        return art
    try:
        from router.lab.importers import read_prices, run_import
        from router.lab.outcomes import read_outcomes
        from router.lab.train import TrainConfig, train_router
    except ImportError as exc:
        raise RuntimeError(f"router package not importable ({exc})") from exc
    split = base / "data"
    if not (split / "train.jsonl").exists():
        log(f"importing routellm-gsm8k ({max_prompts} prompts) from {DATA}")
        run_import("routellm-gsm8k", DATA, split, test_fraction=0.5, seed=0, max_prompts=max_prompts)
    log(f"training a {featurizer} router artifact (once; about a minute)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    train_router(read_outcomes(split / "train.jsonl"), art, read_prices(split / "prices.json"), TrainConfig(featurizer=featurizer, cv_folds=2))
    return art


# ---------------------------------------------------------------- measurement

@dataclass
class Plan:
    concurrency: list[int]
    streams: list[bool]
    n_c1: int
    n_cmany: int
    warmup: int
    time_limit_s: float
    max_tokens: int
    warmup_time_limit_s: float = 5.0
    request_timeout_s: float = 30.0
    isolate: bool = True


@dataclass
class Row:
    case: str
    stream: bool
    concurrency: int
    load: dict[str, Any]
    server_cpu_ms: float      # per OK request, server process tree
    redis_cpu_ms: float       # per OK request, redis-server (nan when not used)
    upstream_cpu_ms: float
    overhead_p50_ms: float = math.nan
    overhead_p99_ms: float = math.nan
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Target:
    case: str
    url: str
    key: str
    model: str
    server_pid: int | None      # None: direct (no server in between)
    redis_pid: int | None
    upstream_pid: int


def warm_up(t: Target, plan: Plan) -> None:
    # Warm every worker process: a c=1 warm-up reuses one connection, so it would reach only one worker.
    if plan.warmup:
        asyncio.run(run_load(LoadSpec(url=t.url, model=t.model, key=t.key, n=2 * plan.warmup, concurrency=16, max_tokens=plan.max_tokens,
                                      time_limit_s=2 * plan.warmup_time_limit_s, request_timeout_s=plan.request_timeout_s)))


def measure(t: Target, stream: bool, c: int, plan: Plan, log: Callable[[str], None]) -> Row:
    n = plan.n_c1 if c == 1 else plan.n_cmany
    common: dict[str, Any] = dict(url=t.url, model=t.model, key=t.key, concurrency=c, stream=stream, max_tokens=plan.max_tokens,
                                  time_limit_s=plan.time_limit_s, request_timeout_s=plan.request_timeout_s)
    if plan.warmup:
        warm = {**common, "time_limit_s": min(plan.time_limit_s, plan.warmup_time_limit_s)}
        asyncio.run(run_load(LoadSpec(n=max(plan.warmup, c), **warm)))
    pids = (t.server_pid, t.redis_pid, t.upstream_pid)
    before = [tree_cpu_s(p) if p else 0.0 for p in pids]
    workers_before = worker_cpu_s(t.server_pid) if t.server_pid else {}
    result = asyncio.run(run_load(LoadSpec(n=n, **common)))
    after = [tree_cpu_s(p) if p else 0.0 for p in pids]
    shares = worker_shares(workers_before, worker_cpu_s(t.server_pid)) if t.server_pid else []
    ok = max(result["ok"], 1)
    per = [(a - b) * 1000 / ok if p and result["ok"] else math.nan for a, b, p in zip(after, before, pids)]
    row = Row(t.case, stream, c, result, per[0], per[1], per[2])
    if t.case.split(" ")[0].endswith("-w2") and shares:
        # How evenly the kernel spread the load generator's keep-alive connections over the workers.
        row.extra["worker_cpu_shares"] = shares
    log(f"  {t.case:<15} stream={'on ' if stream else 'off'} c={c:<4} p50={result['p50_ms']:8.2f} p99={result['p99_ms']:8.2f} "
        f"rps={result['rps']:8.1f} err={result['errors']} cpu/req={row.server_cpu_ms:6.2f}ms"
        + (f" workers={'/'.join(f'{x:.0%}' for x in shares)}" if row.extra.get("worker_cpu_shares") else "")
        + (f"  {result.get('error_samples')}" if result["errors"] else ""))
    return row


# ---------------------------------------------------------------- report

def fmt(x: float, digits: int = 2) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def add_overheads(rows: list[Row]) -> None:
    direct = {(r.stream, r.concurrency): r for r in rows if r.case == "direct"}
    for r in rows:
        d = direct.get((r.stream, r.concurrency))
        if d is not None and r.case != "direct":
            r.overhead_p50_ms = r.load["p50_ms"] - d.load["p50_ms"]
            r.overhead_p99_ms = r.load["p99_ms"] - d.load["p99_ms"]


def detail_table(rows: list[Row]) -> str:
    head = ("| case | stream | c | p50 ms | p99 ms | TTFB p50 | +p50 ms | +p99 ms | RPS | errors | server CPU ms/req | "
            "redis CPU ms/req | load-gen CPU ms/req |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        ld = r.load
        lines.append(f"| {r.case} | {'on' if r.stream else 'off'} | {r.concurrency} | {fmt(ld['p50_ms'])} | {fmt(ld['p99_ms'])} | "
                     f"{fmt(ld.get('ttfb_p50_ms', math.nan))} | {fmt(r.overhead_p50_ms)} | {fmt(r.overhead_p99_ms)} | {fmt(ld['rps'], 0)} | "
                     f"{ld['errors']}/{ld['n']} | {fmt(r.server_cpu_ms)} | {fmt(r.redis_cpu_ms)} | "
                     f"{fmt(ld['client_cpu_s'] * 1000 / max(ld['ok'], 1))} |")
    return "\n".join(lines)


def summary(rows: list[Row]) -> dict[tuple[str, bool], dict[str, float]]:
    """Per case and stream mode: max RPS over the concurrency levels, CPU/request over all levels, c=1 overheads."""
    out: dict[tuple[str, bool], dict[str, float]] = {}
    for r in rows:
        s = out.setdefault((r.case, r.stream), {"max_rps": 0.0, "cpu_s": 0.0, "ok": 0, "c1_p50": math.nan, "c1_p99": math.nan,
                                                "c1_over_p50": math.nan, "c1_over_p99": math.nan})
        s["max_rps"] = max(s["max_rps"], r.load["rps"])
        # CPU per request only from levels that completed (almost) all their requests: with timeouts, the CPU
        # spent on requests that never finished would be charged to the few that did.
        if not math.isnan(r.server_cpu_ms) and r.load["ok"] > 0 and r.load["errors"] <= 0.01 * r.load["n"]:
            s["cpu_s"] += r.server_cpu_ms * r.load["ok"] / 1000
            s["ok"] += r.load["ok"]
        if r.concurrency == 1:
            s["c1_p50"], s["c1_p99"] = r.load["p50_ms"], r.load["p99_ms"]
            s["c1_over_p50"], s["c1_over_p99"] = r.overhead_p50_ms, r.overhead_p99_ms
    for s in out.values():
        s["cpu_ms"] = s["cpu_s"] * 1000 / s["ok"] if s["ok"] else math.nan
    return out


def summary_table(summ: dict[tuple[str, bool], dict[str, float]]) -> str:
    lines = ["| case | stream | max RPS | server CPU ms/req (levels with ≤ 1% errors) | c=1 +p50 ms | c=1 +p99 ms |", "|---|---|---|---|---|---|"]
    for (case, stream), s in summ.items():
        lines.append(f"| {case} | {'on' if stream else 'off'} | {fmt(s['max_rps'], 0)} | {fmt(s['cpu_ms'])} | "
                     f"{fmt(s['c1_over_p50'])} | {fmt(s['c1_over_p99'])} |")
    return "\n".join(lines)


def targets(summ: dict[tuple[str, bool], dict[str, float]]) -> list[tuple[str, str, str, bool | None]]:
    """(target, measured, limit, met) for the targets of issue 7; met is None when a case is missing."""
    out: list[tuple[str, str, str, bool | None]] = []

    def get(case: str, stream: bool, key: str) -> float:
        return summ.get((case, stream), {}).get(key, math.nan)

    def verdict(value: float, ok: bool) -> bool | None:
        return None if math.isnan(value) else ok

    for stream in (False, True):
        ratio = get("ttc-redis", stream, "max_rps") / get("litellm", stream, "max_rps") if get("litellm", stream, "max_rps") else math.nan
        out.append((f"passthrough max RPS ÷ LiteLLM's, stream {'on' if stream else 'off'} (Redis ledger)", f"{fmt(ratio)}×", "≥ 3×",
                    verdict(ratio, ratio >= 3)))
        sq = get("ttc-sqlite", stream, "max_rps") / get("litellm", stream, "max_rps") if get("litellm", stream, "max_rps") else math.nan
        out.append((f"  same, embedded SQLite ledger, stream {'on' if stream else 'off'}", f"{fmt(sq)}×", "≥ 3×", verdict(sq, sq >= 3)))
    for stream in (False, True):
        ratio = get("ttc-redis", stream, "cpu_ms") / get("litellm", stream, "cpu_ms")
        out.append((f"gateway CPU/request ÷ LiteLLM's, stream {'on' if stream else 'off'} (Redis ledger, metrics on)", f"{fmt(ratio, 3)}",
                    "≤ 0.333", verdict(ratio, ratio <= 1 / 3)))
    p50, p99 = get("ttc-redis", False, "c1_over_p50"), get("ttc-redis", False, "c1_over_p99")
    out.append(("added latency c=1 p50 (non-streaming, Redis)", f"{fmt(p50)} ms", "≤ 1 ms", verdict(p50, p50 <= 1)))
    out.append(("added latency c=1 p99 (non-streaming, Redis)", f"{fmt(p99)} ms", "≤ 3 ms", verdict(p99, p99 <= 3)))
    for case in AUTO_CASES:
        if (case, False) in summ:
            auto = get(case, False, "c1_p50") - get("ttc-redis", False, "c1_p50")
            out.append((f"`auto` p50 − passthrough p50, c=1 non-streaming ({case})", f"{fmt(auto)} ms", "≤ 5 ms", verdict(auto, auto <= 5)))
    return out


def targets_table(rows: list[tuple[str, str, str, bool | None]]) -> str:
    lines = ["| target | measured | limit | met |", "|---|---|---|---|"]
    for name, measured, limit, met in rows:
        lines.append(f"| {name} | {measured} | {limit} | {'n/a' if met is None else ('yes' if met else '**no**')} |")
    return "\n".join(lines)


def machine_info() -> dict[str, str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    date = subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip()
    return {"date": date, "nproc": str(os.cpu_count()), "cpu": cpu, "kernel": platform.release()}


def versions(litellm_exe: Path | None) -> dict[str, str]:
    import importlib.metadata as md

    def v(name: str) -> str:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return "-"

    ttc = v("ttc-gateway")
    if ttc == "-":  # run from a checkout that is not pip-installed: read the version from pyproject.toml
        import tomllib

        ttc = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    out = {"python": platform.python_version(), "ttc-gateway": ttc, "uvicorn": v("uvicorn"),
           "uvloop": v("uvloop"), "httptools": v("httptools"), "fastapi": v("fastapi")}
    if litellm_exe is not None:
        out["litellm (proxy venv)"] = venv_version(litellm_exe, "litellm")
        out["uvicorn (proxy venv)"] = venv_version(litellm_exe, "uvicorn")
    return out


def render(rows: list[Row], plan: Plan, info: dict[str, str], vers: dict[str, str], skipped: dict[str, str], wall_s: float,
           upstream_delay_ms: float, note: str) -> str:
    summ = summary(rows)
    parts = [
        f"## compare.py run, {info['date']}",
        "",
        f"Machine: {info['nproc']} CPUs, {info['cpu']}, Linux {info['kernel']}. "
        + ", ".join(f"{k} {v}" for k, v in vers.items()) + ".",
        "",
        f"Plan: concurrency {plan.concurrency}, stream {['on' if s else 'off' for s in plan.streams]}, N = {plan.n_c1} at c=1 and "
        f"{plan.n_cmany} above (each level stops issuing after {plan.time_limit_s:g} s; requests time out after "
        f"{plan.request_timeout_s:g} s), {plan.warmup} warm-up requests before each level, max_tokens {plan.max_tokens}, fake upstream delay "
        f"{upstream_delay_ms} ms, distinct prompts. All servers run at once and each level is measured across all cases in turn" + (", the other servers paused (SIGSTOP) while one is measured. " if plan.isolate else ". ") + "Load generator, upstream, Redis and the "
        f"servers share the machine. "
        f"Wall time {wall_s / 60:.1f} min." + (f" {note}" if note else ""),
        "",
        "### Targets (issue 7)",
        "",
        targets_table(targets(summ)),
        "",
        "### Summary",
        "",
        summary_table(summ),
        "",
        "### All measurements",
        "",
        "Latency is to the last byte; `+p50`/`+p99` are the case's percentile minus direct's at the same concurrency and stream mode "
        "(above c=1 they are mostly queueing). CPU is utime+stime from /proc per successful request: the server's process tree, "
        "redis-server, and the load generator.",
        "",
        detail_table(rows),
    ]
    split = [r for r in rows if r.extra.get("worker_cpu_shares")]
    if split:
        parts += ["", "CPU split between the child processes of `ttc-redis-w2`, its two workers and the supervisor's helper (share of their CPU, busiest first), which shows how "
                  "the kernel spread the load generator's keep-alive connections: "
                  + "; ".join(f"stream {'on' if r.stream else 'off'} c={r.concurrency}: "
                              + "/".join(f"{x:.0%}" for x in r.extra["worker_cpu_shares"]) for r in split) + "."]
    if skipped:
        parts += ["", "Skipped: " + "; ".join(f"`{k}`: {v}" for k, v in skipped.items())]
    return "\n".join(parts) + "\n"


def update_results(path: Path, section: str) -> None:
    block = f"{RESULTS_BEGIN}\n{section}{RESULTS_END}\n"
    text = path.read_text() if path.exists() else "# Benchmark results\n\n"
    if RESULTS_BEGIN in text and RESULTS_END in text:
        start = text.index(RESULTS_BEGIN)
        end = text.index(RESULTS_END) + len(RESULTS_END)
        text = text[:start] + block.rstrip("\n") + text[end:]
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


# ---------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: small N, no RESULTS.md unless --results is given")
    parser.add_argument("--cases", nargs="+", choices=DEFAULT_CASES, default=DEFAULT_CASES)
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 32, 128])
    parser.add_argument("--stream", choices=["off", "on", "both"], default="both")
    parser.add_argument("--n-c1", type=int, default=None, help="requests at concurrency 1 (default 300; quick 60)")
    parser.add_argument("--n", type=int, default=None, help="requests at higher concurrency (default 1000; quick 200)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up requests per level (default 50; quick 20)")
    parser.add_argument("--time-limit", type=float, default=12.0, help="seconds per measurement (no new request after it)")
    parser.add_argument("--request-timeout", type=float, default=30.0, help="seconds; a slower request counts as an error")
    parser.add_argument("--budget-min", type=float, default=14.0, help="cases that would start after this many minutes are skipped")
    parser.add_argument("--no-isolate", dest="isolate", action="store_false",
                        help="keep the other servers running while one is measured (default: pause them)")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--upstream-delay-ms", type=float, default=0.0)
    parser.add_argument("--router-featurizer", default="static", help="featurizer of the ttc-auto artifact (static | minilm)")
    parser.add_argument("--router-prompts", type=int, default=300)
    parser.add_argument("--router-threads", type=int, default=1,
                        help="torch threads of the router in the gateway (TTC_ROUTER_THREADS); with 2, OpenMP barriers on this "
                             "shared 2-core box made one MiniLM embedding ~10x slower")
    parser.add_argument("--results", type=Path, default=None, help="markdown file to update (default bench/RESULTS.md for full runs)")
    parser.add_argument("--json", type=Path, default=None, help="also write raw rows as JSON")
    parser.add_argument("--note", default="", help="free text added to the RESULTS.md section")
    parser.add_argument("--request-log", choices=["on", "off", "both"], default="on",
                        help="the gateways' request log (default on, as in production); off measures without it; both runs "
                             "each ttc case twice, logging off and on, side by side in one run")
    args = parser.parse_args(argv)

    quick = args.quick
    plan = Plan(concurrency=args.concurrency,
                streams={"off": [False], "on": [True], "both": [False, True]}[args.stream],
                n_c1=args.n_c1 or (60 if quick else 300), n_cmany=args.n or (200 if quick else 1000),
                warmup=args.warmup if args.warmup is not None else (20 if quick else 50),
                time_limit_s=args.time_limit if not quick else min(args.time_limit, 10.0), max_tokens=args.max_tokens,
                request_timeout_s=args.request_timeout, isolate=args.isolate)
    results_path = args.results or (None if quick else RESULTS_MD)
    install_uvloop()
    t_start = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - t_start:6.1f}s] {msg}", flush=True)

    skipped: dict[str, str] = {}
    litellm_exe: Path | None = None
    if "litellm" in args.cases:
        try:
            litellm_exe = litellm_venv(log)
        except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
            skipped["litellm"] = str(exc).splitlines()[0]
            log(f"SKIP litellm: {exc}")
    artifacts: dict[str, Path] = {}
    for case, featurizer in (("ttc-auto", args.router_featurizer), ("ttc-auto-minilm", "minilm")):
        if case not in args.cases:
            continue
        try:
            artifacts[case] = router_artifact(featurizer, args.router_prompts, log)
        except Exception as exc:  # noqa: BLE001 - any failure of the router package skips only this case
            skipped[case] = f"router artifact unavailable: {type(exc).__name__}: {exc}".splitlines()[0]
            log(f"SKIP {case}: {skipped[case]}\n  to build it by hand: cd {REPO} && python -m router import --source "
                f"routellm-gsm8k --out-dir /tmp/gsm8k --max-prompts {args.router_prompts} && python -m router train "
                f"--data /tmp/gsm8k/train.jsonl --out /tmp/gsm8k-artifact --featurizer {featurizer} --cv-folds 2")

    work = Path(tempfile.mkdtemp(prefix="ttc-compare-"))
    env = base_env()
    env["TTC_CONFIG_DIR"] = str(work / "ttc-config-dir")
    env["TTC_DATA_DIR"] = str(work / "ttc-data-dir")  # the request log of a Redis-ledger gateway goes here
    env["TTC_ROUTER_THREADS"] = str(args.router_threads)
    procs: list[Proc] = []
    rows: list[Row] = []
    redis_srv = None
    try:
        up_port = free_port()
        upstream = Proc("upstream", [sys.executable, "-m", "testkit.fake_upstream", "--port", str(up_port), "--no-record",
                                     "--delay-ms", str(args.upstream_delay_ms)], env, work)
        procs.append(upstream)
        up_url = f"http://127.0.0.1:{up_port}"
        wait_ready(f"{up_url}/_requests", upstream.proc, 30)
        needs_redis = any(c in args.cases for c in ("ttc-redis", "ttc-redis-w2", *AUTO_CASES))
        redis_pid: int | None = None
        if needs_redis:
            from testkit.redis_server import RedisServer

            redis_srv = RedisServer()
            redis_srv.start()
            redis_pid = redis_srv.proc.pid if redis_srv.proc is not None else None
        log(f"work dir {work}; upstream {up_url}" + (f"; redis {redis_srv.url}" if redis_srv else ""))

        # Start every server first, then measure level by level, each level across all cases in turn, so that
        # a change in the background load of this shared machine hits every case alike rather than one of them.
        targets_: list[Target] = []
        # `--request-log both`: every ttc case twice, logging off and on, measured side by side in this run.
        modes = ["off", "on"] if args.request_log == "both" else [args.request_log]
        for case, log_mode in ((c, m) for c in args.cases for m in (modes if c.startswith("ttc") else modes[:1])):
            label = f"{case} log-{log_mode}" if len(modes) > 1 and case.startswith("ttc") else case
            if case in skipped:
                continue
            if case == "direct":
                targets_.append(Target(case, up_url, "fake", "fast", None, None, upstream.pid))
                continue
            port = free_port()
            if case == "litellm":
                assert litellm_exe is not None
                cfg = write_yaml(work / "litellm.yaml", litellm_config(up_url))
                lenv = {**env, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_MODE": "PRODUCTION", "LITELLM_LOG": "ERROR",
                        "DISABLE_SCHEMA_UPDATE": "True"}
                server = Proc(case, [str(litellm_exe), "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port),
                                     "--num_workers", "1"], lenv, work)
                key, ready = LITELLM_KEY, f"http://127.0.0.1:{port}/health/liveliness"
            else:
                workers = 2 if case.endswith("-w2") else 1
                if case == "ttc-sqlite":
                    ledger: dict[str, Any] = {"path": str(work / f"ledger-{port}.sqlite3")}
                else:
                    assert redis_srv is not None
                    ledger = {"redis_url": redis_srv.url}
                conf = ttc_config(up_url, ledger, args.max_tokens, artifacts.get(case))
                if log_mode == "off":  # the request log is on by default (SQLite beside the ledger, or in TTC_DATA_DIR)
                    conf["request_log"] = {"enabled": False}
                cfg = write_yaml(work / f"{label.replace(' ', '-')}.yaml", conf)
                server = Proc(label, [sys.executable, "-m", "gateway.cli", "serve", "--config", str(cfg), "--host", "127.0.0.1",
                                     "--port", str(port), "--workers", str(workers)], env, work)
                key, ready = TTC_KEY, f"http://127.0.0.1:{port}/health/ready"
            procs.append(server)
            log(f"starting {label} on :{port}")
            try:
                wait_ready(ready, server.proc, 180)
            except (RuntimeError, TimeoutError) as exc:
                skipped[label] = f"did not start: {exc}"
                log(f"SKIP {label}: {exc}\n{server.tail()}")
                server.stop()
                continue
            model = "auto" if case.startswith("ttc-auto") else "fast"
            targets_.append(Target(label, f"http://127.0.0.1:{port}", key, model, server.pid,
                                   None if case in ("litellm", "ttc-sqlite") else redis_pid, upstream.pid))
        for t in targets_:
            warm_up(t, plan)
        log("servers up and warm: " + ", ".join(t.case for t in targets_))
        for stream in plan.streams:
            for c in plan.concurrency:
                if time.monotonic() - t_start > args.budget_min * 60:
                    skipped[f"stream {'on' if stream else 'off'} c={c}"] = f"time budget of {args.budget_min:g} min used up"
                    log(f"SKIP level stream={stream} c={c}: time budget used up")
                    continue
                for t in targets_:
                    others = [o.server_pid for o in targets_ if o is not t and o.server_pid is not None] if plan.isolate else []
                    with paused(others):
                        rows.append(measure(t, stream, c, plan, log))
        order = {case: i for i, case in enumerate(args.cases)}
        rows.sort(key=lambda r: (order[r.case.split(" ")[0]], r.case, r.stream, r.concurrency))
    finally:
        for p in reversed(procs):
            p.stop()
        if redis_srv is not None:
            redis_srv.close()
    wall = time.monotonic() - t_start
    add_overheads(rows)
    section = render(rows, plan, machine_info(), versions(litellm_exe), skipped, wall, args.upstream_delay_ms,
                     ("Quick run. " if quick else "") + f"Router torch threads in the gateway: {args.router_threads}. " + args.note)
    print()
    print(section)
    if args.json:
        args.json.write_text(json.dumps([{"case": r.case, "stream": r.stream, "concurrency": r.concurrency, **r.load,
                                           "server_cpu_ms": r.server_cpu_ms, "redis_cpu_ms": r.redis_cpu_ms,
                                           "upstream_cpu_ms": r.upstream_cpu_ms, "overhead_p50_ms": r.overhead_p50_ms,
                                           "overhead_p99_ms": r.overhead_p99_ms} for r in rows], indent=1, default=str))
    if results_path is not None:
        update_results(results_path, section)
        log(f"wrote {results_path}")
    if os.environ.get("TTC_BENCH_KEEP_WORK"):
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    apply_environment_defaults()
    sys.exit(main())
