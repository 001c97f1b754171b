"""Gateway CPU per request of /v1/responses and /v1/messages against /v1/chat/completions, side by side.

    python -m bench.gateway.dialects [--n 400] [--rounds 5] [--stream]     # e.g. --n 250 --rounds 40

Starts the fake upstream (its own process, no delay) and one `ttc serve` (one worker, the embedded
SQLite ledger), then sends the same short prompt through each endpoint with one kept-alive client,
in rounds that alternate the endpoints so that drift hits all three alike. CPU is utime+stime of the
gateway process from /proc, per request; the table gives each endpoint's median over the rounds and
its difference from chat completions.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import httpx
import yaml

from bench.gateway.compare import tree_cpu_s
from contracts.environment import apply_environment_defaults
from gateway.auth import hash_key
from testkit.servers import ProcessServer, free_port, ttc_command

KEY = "sk-bench-dialects"
PROMPT = "Say one short sentence about the sea."


def requests_for(stream: bool) -> dict[str, tuple[str, dict[str, object]]]:
    return {
        # With usage asked for when streamed: the other two APIs always report usage, so their upstream
        # requests ask for it, and the chat request that does the same work is this one.
        "chat.completions": ("/v1/chat/completions", {"model": "fast", "max_tokens": 16, "stream": stream,
                                                      "messages": [{"role": "user", "content": PROMPT}],
                                                      **({"stream_options": {"include_usage": True}} if stream else {})}),
        "responses": ("/v1/responses", {"model": "fast", "max_output_tokens": 16, "stream": stream, "input": PROMPT}),
        "messages": ("/v1/messages", {"model": "fast", "max_tokens": 16, "stream": stream,
                                      "messages": [{"role": "user", "content": PROMPT}]}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400, help="requests per endpoint per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--stream", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ttc-dialects-"))
    up_port, gw_port = free_port(), free_port()
    upstream = ProcessServer(["python", "-m", "testkit.fake_upstream", "--port", str(up_port), "--no-record"], up_port,
                             health_path="/_requests", log_path=work / "upstream.log")
    config = {
        "models": [{"name": "fast", "litellm_params": {"model": "openai/fast", "api_base": f"http://127.0.0.1:{up_port}/v1", "api_key": "x"},
                    "price": {"input_per_1m": 1.0, "output_per_1m": 2.0}, "max_output_tokens": 64, "max_retries": 0}],
        "tenants": [{"id": "bench", "api_key_hashes": [hash_key(KEY)], "budgets": [{"window": "day", "limit_usd": 1000.0}]}],
        "ledger": {"path": str(work / "ledger.db")},
        "server": {"watch_interval_s": 0},
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    gateway = ProcessServer(ttc_command("serve", "--config", str(work / "config.yaml"), "--port", str(gw_port), "--log-level", "warning"),
                            gw_port, log_path=work / "gateway.log")
    with upstream, gateway, httpx.Client(base_url=gateway.url, headers={"authorization": f"Bearer {KEY}", "x-api-key": KEY},
                                         timeout=30) as client:
        assert gateway.process is not None
        cases = requests_for(args.stream)
        for path, body in cases.values():  # warm up every path once
            for _ in range(50):
                client.post(path, json=body).raise_for_status()
        cpu: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, (path, body) in cases.items():
                before = tree_cpu_s(gateway.process.pid)
                for _ in range(args.n):
                    response = client.post(path, json=body)
                    response.raise_for_status()
                    response.read()
                cpu[name].append((tree_cpu_s(gateway.process.pid) - before) * 1000 / args.n)
    base = statistics.median(cpu["chat.completions"])
    print(f"gateway CPU ms/request, {args.rounds} rounds x {args.n} requests, stream={'on' if args.stream else 'off'}")
    print("| endpoint | CPU ms/req (median) | rounds | minus chat.completions (median) | minus chat.completions, paired by round: mean [95% CI] |")
    print("|---|---|---|---|---|")
    for name, values in cpu.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.3f} | {', '.join(f'{v:.3f}' for v in values)} | {median - base:+.3f} | {paired_difference(values, cpu['chat.completions'])} |")


def paired_difference(values: list[float], base: list[float]) -> str:
    """Mean per-round difference with a t interval: the rounds alternate the endpoints, so drift
    in the machine's speed cancels within a round; many short rounds also average out the
    10 ms clock-tick resolution of /proc's CPU times."""
    differences = [v - b for v, b in zip(values, base, strict=True)]
    mean = statistics.fmean(differences)
    if len(differences) < 2:
        return f"{mean:+.3f}"
    half = 1.96 * statistics.stdev(differences) / len(differences) ** 0.5
    return f"{mean:+.3f} [{mean - half:+.3f}, {mean + half:+.3f}]"


if __name__ == "__main__":
    apply_environment_defaults()
    main()
