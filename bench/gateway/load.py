"""Async load generator for OpenAI-compatible chat endpoints.

    python -m bench.gateway.load --url http://127.0.0.1:8000 --key sk-... --model fast \
        [-n 1000] [-c 32] [--stream] [--max-tokens 16] [--time-limit 60] [--warmup 50]

Sends N chat completions at concurrency C, every one with a distinct prompt (so no cache
flatters anyone), bounded in count (`-n`) and in time (`--time-limit`: no new request starts
after it). Prints one JSON object:
``{p50_ms, p90_ms, p99_ms, max_ms, mean_ms, rps, errors, n, ok, concurrency, stream, client_cpu_s, ...}``
(for streams also ``ttfb_p50_ms``/``ttfb_p99_ms``; latency is always time to the last byte).

The client is a minimal HTTP/1.1 keep-alive client on raw asyncio streams, one connection per
concurrent worker, not httpx: on a 2-core machine the load generator competes for the same CPU
as the server it measures, and httpx costs several times more CPU per request. ``client_cpu_s``
is this process's own user+system CPU over the run, so a reader can see how much of the machine
the generator took. Library use: ``asyncio.run(run_load(LoadSpec(...)))`` returns a dict.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import secrets
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from contracts.environment import apply_environment_defaults

try:  # the JSON encoding of request bodies is on the generator's hot path
    import orjson

    def _dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)
except ImportError:  # pragma: no cover
    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()


WORDS = ("alpha", "river", "copper", "lantern", "meadow", "signal", "orbit", "maple", "quartz", "harbor",
         "violet", "ember", "glacier", "falcon", "prairie", "summit")


@dataclass
class LoadSpec:
    url: str                      # base URL, e.g. http://127.0.0.1:8000 ("/v1/chat/completions" is appended)
    model: str
    key: str = "sk-bench"
    n: int = 200
    concurrency: int = 1
    stream: bool = False
    max_tokens: int = 16
    time_limit_s: float = 60.0    # no new request starts after this many seconds
    request_timeout_s: float = 30.0
    warmup: int = 0               # requests sent (at the same concurrency) before measuring
    path: str = "/v1/chat/completions"
    prompt_words: int = 24
    extra_body: dict[str, Any] = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values; nan when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def make_prompt(i: int, nonce: str, words: int) -> str:
    """A distinct prompt per request: a run nonce, the index and an index-dependent word salad."""
    salad = " ".join(WORDS[(i * 7 + k * 3 + k * k) % len(WORDS)] for k in range(words))
    return f"[{nonce}-{i}] Summarize in one line: {salad} (item {i})."


class HttpError(Exception):
    pass


class Connection:
    """One HTTP/1.1 keep-alive connection: write a request, read exactly one response."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, head: bytes, body: bytes) -> tuple[int, bytes, float]:
        """Returns (status, body, ttfb perf_counter stamp: the first byte of the response body)."""
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(head + body)
        reader = self.reader
        status_line = await reader.readline()
        if not status_line:
            raise HttpError("connection closed before a response")
        status = int(status_line.split(b" ", 2)[1])
        length = -1
        chunked = close = False
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            lname = name.strip().lower()
            if lname == b"content-length":
                length = int(value.strip())
            elif lname == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif lname == b"connection" and b"close" in value.lower():
                close = True
        ttfb = 0.0
        if chunked:
            parts: list[bytes] = []
            while True:
                size_line = await reader.readline()
                if not ttfb:
                    ttfb = time.perf_counter()
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # trailers (none expected) end with an empty line
                    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
            data = b"".join(parts)
        elif length >= 0:
            data = await reader.readexactly(length) if length else b""
            ttfb = time.perf_counter()
        else:  # body until close
            data = await reader.read()
            ttfb = time.perf_counter()
            close = True
        if close:
            self.close()
        return status, data, ttfb


def _ok(status: int, data: bytes, stream: bool) -> bool:
    if status != 200:
        return False
    if stream:
        return data.rstrip().endswith(b"data: [DONE]")
    return b'"choices"' in data


async def run_load(spec: LoadSpec) -> dict[str, Any]:
    parts = urlsplit(spec.url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    path = spec.path
    nonce = secrets.token_hex(4)
    stream_options = {"stream_options": {"include_usage": True}} if spec.stream else {}

    def build(i: int) -> tuple[bytes, bytes]:
        body = _dumps({"model": spec.model, "max_tokens": spec.max_tokens, "stream": spec.stream, **stream_options,
                       "messages": [{"role": "user", "content": make_prompt(i, nonce, spec.prompt_words)}], **spec.extra_body})
        head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {spec.key}\r\n"
                f"Content-Type: application/json\r\nAccept: */*\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        return head, body

    async def phase(count: int, offset: int, deadline: float, record: bool) -> tuple[list[float], list[float], int, dict[str, int]]:
        latencies: list[float] = []
        ttfbs: list[float] = []
        errors = 0
        samples: dict[str, int] = {}
        counter = iter(range(offset, offset + count))

        async def worker() -> None:
            nonlocal errors
            conn = Connection(host, port)
            try:
                for i in counter:
                    if time.perf_counter() > deadline:
                        break
                    head, body = build(i)
                    t0 = time.perf_counter()
                    try:
                        status, data, ttfb = await asyncio.wait_for(conn.request(head, body), spec.request_timeout_s)
                    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, HttpError, ValueError, IndexError) as exc:
                        conn.close()
                        errors += 1
                        key = type(exc).__name__
                        samples[key] = samples.get(key, 0) + 1
                        continue
                    t1 = time.perf_counter()
                    if not record:
                        continue
                    if _ok(status, data, spec.stream):
                        latencies.append(t1 - t0)
                        ttfbs.append(ttfb - t0)
                    else:
                        errors += 1
                        key = f"http {status}: {data[:160].decode(errors='replace')}"
                        samples[key] = samples.get(key, 0) + 1
            finally:
                conn.close()

        await asyncio.gather(*(worker() for _ in range(max(1, spec.concurrency))))
        return latencies, ttfbs, errors, samples

    if spec.warmup:
        await phase(spec.warmup, spec.n, time.perf_counter() + min(30.0, spec.time_limit_s), record=False)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    latencies, ttfbs, errors, samples = await phase(spec.n, 0, t0 + spec.time_limit_s, record=True)
    elapsed = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    ms = [x * 1000 for x in latencies]
    result: dict[str, Any] = {
        "p50_ms": percentile(ms, 50), "p90_ms": percentile(ms, 90), "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else math.nan, "mean_ms": (sum(ms) / len(ms)) if ms else math.nan,
        "rps": len(ms) / elapsed if elapsed > 0 else 0.0,
        "errors": errors, "n": len(ms) + errors, "ok": len(ms), "requested": spec.n,
        "concurrency": spec.concurrency, "stream": spec.stream, "elapsed_s": elapsed,
        "client_cpu_s": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
    }
    if spec.stream:
        t = [x * 1000 for x in ttfbs]
        result.update(ttfb_p50_ms=percentile(t, 50), ttfb_p99_ms=percentile(t, 99))
    if samples:
        result["error_samples"] = dict(sorted(samples.items(), key=lambda kv: -kv[1])[:5])
    return result


def install_uvloop() -> bool:
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", default=os.environ.get("TTC_BENCH_KEY", "sk-bench"))
    parser.add_argument("--model", default="fast")
    parser.add_argument("-n", "--requests", type=int, default=200)
    parser.add_argument("-c", "--concurrency", type=int, default=1)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds; no new request starts after it")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request timeout, seconds")
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args(argv)
    if not args.no_uvloop:
        install_uvloop()
    spec = LoadSpec(url=args.url, model=args.model, key=args.key, n=args.requests, concurrency=args.concurrency,
                    stream=args.stream, max_tokens=args.max_tokens, time_limit_s=args.time_limit,
                    request_timeout_s=args.timeout, warmup=args.warmup)
    result = asyncio.run(run_load(spec))
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in result.items()}))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    apply_environment_defaults()
    sys.exit(main())
