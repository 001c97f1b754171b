"""Time to first token and decode speed of the built-in local models, through the gateway.

Runs the gateway on the built-in defaults in-process, streams a few prompts per model with the
OpenAI SDK, and prints TTFT (request sent -> first content token) and tokens/s (completion
tokens / time from first to last token). The first request per model (model load) is reported
separately and excluded from the medians.

    python -m bench.gateway.local_models [--runs 5] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from contracts.environment import apply_environment_defaults

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

PROMPTS = [
    "Explain what a prime number is.",
    "Write a short poem about the sea.",
    "List three uses of a paperclip.",
    "What is the capital of Japan and why is it famous?",
    "Describe how to make a cup of tea.",
    "Why is the sky blue?",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    home = tempfile.mkdtemp()
    os.environ.setdefault("TTC_CONFIG_DIR", home)
    os.environ.setdefault("TTC_DATA_DIR", home)

    import openai

    from gateway.app import create_app
    from gateway.defaults import demo_key
    from gateway.runtime import ConfigSource
    from testkit.servers import ThreadedServer

    with ThreadedServer(create_app(ConfigSource())) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=demo_key(), max_retries=0, timeout=600)
        print(f"threads per model: {os.environ.get('TTC_LOCAL_THREADS', 'min(2, cores)')}, cores: {os.cpu_count()}")
        print(f"{'model':<14} {'load+first ms':>13} {'TTFT p50 ms':>12} {'tok/s p50':>10} {'tokens/run':>10}")
        for model in ("smollm2-135m", "gemma3-270m"):
            ttfts: list[float] = []
            rates: list[float] = []
            tokens: list[int] = []
            cold = 0.0
            for run in range(args.runs + 1):
                started = time.perf_counter()
                first = last = None
                usage = None
                for chunk in client.chat.completions.create(
                    model=model, stream=True, max_tokens=args.max_tokens, temperature=0.7,
                    messages=[{"role": "user", "content": PROMPTS[run % len(PROMPTS)]}], stream_options={"include_usage": True},
                ):
                    now = time.perf_counter()
                    if chunk.choices and chunk.choices[0].delta.content:
                        first = first or now
                        last = now
                    if chunk.usage:
                        usage = chunk.usage
                if first is None or usage is None:
                    continue
                if run == 0:
                    cold = (first - started) * 1000
                    continue
                ttfts.append((first - started) * 1000)
                if last and last > first and usage.completion_tokens > 1:
                    rates.append((usage.completion_tokens - 1) / (last - first))
                tokens.append(usage.completion_tokens)
            print(f"{model:<14} {cold:>13.0f} {statistics.median(ttfts):>12.0f} {statistics.median(rates) if rates else float('nan'):>10.1f} "
                  f"{statistics.mean(tokens) if tokens else 0:>10.1f}")


if __name__ == "__main__":
    apply_environment_defaults()
    main()
