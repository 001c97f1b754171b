"""Real coding agent CLIs (Claude Code, Codex) complete a task end to end through the gateway.

    python -m bench.gateway.agents [--agents claude claude-native codex] [--bin-dir DIR] [--claude-model M] [--codex-model M]

SIMULATED UPSTREAM: no capable model is at hand, so every gateway model is served by
`testkit.scripted_agent`, a script that plays the agent's part (it calls the shell tool the CLI
declared, then answers). The CLIs, their requests, the gateway, its ledger and request log are real.

Starts the scripted upstream, one `ttc serve` (embedded SQLite ledger and request log) whose model
names are the ones the CLIs ask for, and a recording proxy in front of it. Then, in a fresh temp
folder each, runs `claude -p` (Anthropic Messages API, `POST /v1/messages?beta=true`, streamed) twice,
once on a model the gateway translates to chat completions and once on one it serves natively (an
`anthropic/` model: the body passes through), and `codex exec` (a `model_providers` entry with
`wire_api = "responses"`, `POST /v1/responses`), each on "create hello.txt containing hi". Passes
when each CLI exits 0, hello.txt holds "hi", every API request was answered 200, the upstream was
spoken to in the expected API and got back the results of the tools it called, the request log has
a 200 row for every request, and the tenant was charged what those rows cost.
Exits 1 on any failure, 2 when a CLI is not installed (it says how to install it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from contracts.environment import apply_environment_defaults
from gateway.auth import hash_key
from testkit.recording_proxy import RecordingProxy
from testkit.servers import ProcessServer, ThreadedServer, free_port, ttc_command

TASK = "create hello.txt containing hi"
DEFAULT_BIN_DIR = Path.home() / ".cache" / "ttc-bench" / "agents" / "node_modules" / ".bin"
INSTALL = "npm install --prefix ~/.cache/ttc-bench/agents @anthropic-ai/claude-code @openai/codex"
PRICE = {"input_per_1m": 3.0, "output_per_1m": 15.0}
CLI_TIMEOUT_S = 300


@dataclass(frozen=True)
class Agent:
    name: str  # also the tenant id
    binary: str
    endpoint: str
    model: str
    key: str
    upstream_api: str  # what the gateway speaks to the upstream: "chat" (translated) or "messages" (native)


def find_binary(name: str, bin_dir: Path) -> str | None:
    local = bin_dir / name
    return str(local) if local.exists() else shutil.which(name)


def gateway_config(upstream: str, agents: list[Agent], work: Path) -> dict[str, object]:
    # The model names the CLIs ask for (Claude Code asks for the same one on its side calls: see run_cli).
    apis = {agent.model: agent.upstream_api for agent in agents}
    return {
        "models": [{"name": name, "litellm_params": {"model": f"{'anthropic' if api == 'messages' else 'openai'}/scripted-agent",
                                                     "api_base": upstream + "/v1", "api_key": "x"},
                    "price": PRICE, "max_output_tokens": 4096, "max_retries": 0} for name, api in sorted(apis.items())],
        "tenants": [{"id": agent.name, "api_key_hashes": [hash_key(agent.key)], "budgets": [{"window": "day", "limit_usd": 100.0}]}
                    for agent in agents],
        "ledger": {"path": str(work / "ledger.db")},
        "server": {"watch_interval_s": 0},
    }


def run_cli(agent: Agent, base_url: str, folder: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ANTHROPIC_", "OPENAI_", "CODEX_"))}
    if agent.name.startswith("claude-code"):
        env.update({"HOME": str(home), "ANTHROPIC_BASE_URL": base_url, "ANTHROPIC_API_KEY": agent.key,
                    "ANTHROPIC_SMALL_FAST_MODEL": agent.model, "ANTHROPIC_DEFAULT_HAIKU_MODEL": agent.model,
                    "DISABLE_TELEMETRY": "1", "DISABLE_AUTOUPDATER": "1",  # its other side calls (a session title) stay on
                    "IS_SANDBOX": "1"})  # IS_SANDBOX: lets --dangerously-skip-permissions run as root
        command = [agent.binary, "-p", TASK, "--model", agent.model, "--dangerously-skip-permissions"]
    else:
        (home / "config.toml").write_text(
            f'model = "{agent.model}"\nmodel_provider = "ttc"\napproval_policy = "never"\nsandbox_mode = "danger-full-access"\n\n'
            f'[model_providers.ttc]\nname = "ttc-gateway"\nbase_url = "{base_url}/v1"\nenv_key = "TTC_API_KEY"\nwire_api = "responses"\n')
        env.update({"CODEX_HOME": str(home), "TTC_API_KEY": agent.key})
        command = [agent.binary, "exec", "--skip-git-repo-check", TASK]
    try:
        return subprocess.run(command, cwd=folder, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
    except subprocess.TimeoutExpired as expired:
        return subprocess.CompletedProcess(command, 124, str(expired.stdout or ""), f"timed out after {CLI_TIMEOUT_S} s")


def version(binary: str) -> str:
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60)
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else f"unknown (exit {done.returncode})"


def check(agent: Agent, proxy: RecordingProxy, first: int, gateway: str, upstream: str, upstream_first: int,
          done: subprocess.CompletedProcess[str], folder: Path) -> tuple[list[str], list[str]]:
    """(facts, failures) for one agent's run."""
    exchanges = proxy.exchanges[first:]
    api = [e for e in exchanges if e.method == "POST"]
    probes = [f"{e.method} {e.path} -> {e.status}" for e in exchanges if e.method != "POST"]
    headers = {"authorization": f"Bearer {agent.key}"}
    rows = httpx.get(f"{gateway}/v1/requests", params={"limit": 1000}, headers=headers, timeout=60).json()["data"]
    usage = httpx.get(f"{gateway}/v1/tenants/{agent.name}/usage", headers=headers, timeout=60).json()
    spent = float(usage["windows"][0]["spent_usd"])
    seen = httpx.get(f"{upstream}/_requests", timeout=30).json()[upstream_first:]
    called = [call for request in seen for call in request["calls"]]
    returned = {result for request in seen for result in request["tool_results"]}
    target = folder / "hello.txt"
    sizes = [e.request_bytes for e in api]
    turn = next((e for e in api if e.tool_types), api[0] if api else None)  # the first agent turn, not a side call
    tools = sorted({f"{kind}x{turn.tool_types.count(kind)}" for kind in turn.tool_types}) if turn else []
    facts = [
        f"CLI exit {done.returncode}; hello.txt: {target.read_text()!r}" if target.exists() else f"CLI exit {done.returncode}; hello.txt missing",
        f"API requests: {len(api)} x {sorted({f'{e.method} {e.path}' + ('?' + e.query if e.query else '') for e in api})}, "
        f"statuses {sorted({e.status for e in api})}, stream {sorted({str(e.stream) for e in api})}, "
        f"bytes {min(sizes, default=0):,}-{max(sizes, default=0):,}",
        f"other requests: {probes or 'none'}",
        f"first agent turn: model {turn.model if turn else None}, body keys {turn.body_keys if turn else []}, declared tools {tools}",
        f"anthropic-beta: {turn.headers.get('anthropic-beta', '-') if turn else '-'}",
        f"upstream (scripted) saw {len(seen)} requests, made {len(called)} tool calls "
        f"({sorted({c['name'] for c in called})}), got {len(returned)} tool results back; it was spoken to as {sorted({r['api'] for r in seen})}; "
        f"{sum(r['structured'] for r in seen)} asked for structured output",
        f"request log: {len(rows)} rows, statuses {sorted({r['status'] for r in rows})}, endpoints {sorted({r['endpoint'] for r in rows})}",
        f"ledger: tenant '{agent.name}' charged ${spent:.6f} for {usage['requests']} requests; log rows sum ${sum(r['cost_usd'] for r in rows):.6f}",
    ]
    failures = []
    if done.returncode != 0:
        failures.append(f"the CLI exited {done.returncode}: {(done.stderr or done.stdout)[-600:]}")
    if not target.exists() or target.read_text().strip() != "hi":
        failures.append("hello.txt was not written with 'hi'")
    if not api or any(e.status != 200 for e in api):
        failures.append(f"API requests not all 200: {[(e.path, e.status) for e in api]}")
    if any(e.path != agent.endpoint for e in api):
        failures.append(f"requests outside {agent.endpoint}: {sorted({e.path for e in api})}")
    if not called or not {call["id"] for call in called} <= returned:
        failures.append(f"the upstream's {len(called)} tool calls did not all come back as results ({len(returned)})")
    if any(r["api"] != agent.upstream_api for r in seen):
        failures.append(f"the upstream was not spoken to as '{agent.upstream_api}' only: {sorted({r['api'] for r in seen})}")
    if len(rows) != len(api) or any(r["status"] != "200" or r["endpoint"] != agent.endpoint for r in rows):
        failures.append(f"request log has {len(rows)} rows for {len(api)} requests, or a row that is not a 200 on {agent.endpoint}")
    if spent <= 0 or abs(spent - sum(r["cost_usd"] for r in rows)) > 1e-6 or usage["requests"] != len(api):
        failures.append(f"ledger charge ${spent:.6f} over {usage['requests']} requests does not match the log's rows")
    return facts, failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", nargs="+", choices=["claude", "claude-native", "codex"], default=["claude", "claude-native", "codex"],
                        help="claude-native: Claude Code on a model the gateway serves natively (an anthropic/ model: no translation)")
    parser.add_argument("--bin-dir", type=Path, default=DEFAULT_BIN_DIR, help="where npm put the CLIs (else: PATH)")
    parser.add_argument("--claude-model", default="claude-opus-4-8", help="the model Claude Code asks for (its own default in 2.1.x)")
    parser.add_argument("--claude-native-model", default="claude-sonnet-5", help="the model name Claude Code asks for in claude-native")
    parser.add_argument("--codex-model", default="gpt-5.5", help="the model Codex asks for (one it knows, so it sends its full tool set)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (logs, ledger, the agents' folders)")
    args = parser.parse_args()
    wanted = {"claude": ("claude-code", "claude", "/v1/messages", args.claude_model, "chat"),
              "claude-native": ("claude-code-native", "claude", "/v1/messages", args.claude_native_model, "messages"),
              "codex": ("codex", "codex", "/v1/responses", args.codex_model, "chat")}
    agents: list[Agent] = []
    for choice in args.agents:
        name, binary_name, endpoint, model, upstream_api = wanted[choice]
        binary = find_binary(binary_name, args.bin_dir)
        if binary is None:
            print(f"`{binary_name}` is not installed (looked in {args.bin_dir} and PATH). Install both CLIs with:\n    {INSTALL}\n"
                  f"or pass --bin-dir to where they are.", file=sys.stderr)
            return 2
        agents.append(Agent(name, binary, endpoint, model, f"sk-bench-{name}", upstream_api))
    work = Path(tempfile.mkdtemp(prefix="ttc-agents-"))
    up_port, gw_port = free_port(), free_port()
    upstream = ProcessServer([sys.executable, "-m", "testkit.scripted_agent", "--port", str(up_port)], up_port,
                             health_path="/_requests", log_path=work / "upstream.log")
    (work / "config.yaml").write_text(yaml.safe_dump(gateway_config(upstream.url, agents, work)))
    gateway = ProcessServer(ttc_command("serve", "--config", str(work / "config.yaml"), "--port", str(gw_port), "--log-level", "warning"),
                            gw_port, log_path=work / "gateway.log")
    proxy = RecordingProxy(gateway.url)
    print("SIMULATED UPSTREAM: every model is testkit.scripted_agent, a script playing the agent (not a model).")
    print(f"task: {TASK!r}; work folder {work}")
    failed = False
    with upstream, gateway, ThreadedServer(proxy, health_path="/health/live") as front:
        for agent in agents:
            folder, home = work / agent.name, work / f"{agent.name}-home"
            folder.mkdir()
            home.mkdir()
            first, upstream_first = len(proxy.exchanges), len(httpx.get(f"{upstream.url}/_requests").json())
            started = time.monotonic()
            done = run_cli(agent, front.url, folder, home)
            elapsed = time.monotonic() - started
            facts, failures = check(agent, proxy, first, gateway.url, upstream.url, upstream_first, done, folder)
            print(f"\n== {agent.name} ({version(agent.binary)}), model {agent.model}, {elapsed:.1f} s: {'PASS' if not failures else 'FAIL'}")
            for line in facts:
                print(f"   {line}")
            for line in failures:
                print(f"   FAIL: {line}")
            failed = failed or bool(failures)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'FAIL' if failed else 'PASS'} (simulated upstream: scripted agent)")
    return 1 if failed else 0


if __name__ == "__main__":
    apply_environment_defaults()
    sys.exit(main())
