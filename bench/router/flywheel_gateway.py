"""The flywheel simulation's gateway-in-the-loop rounds (`python -m bench.router.flywheel --gateway`).

Still a SIMULATION (no real model): a real `ttc serve` process routes `model: auto` with the
served artifact (explore_rate 0.05, request log on with content for the traffic tenant), its
candidate models and the `judge` answered by testkit.replay_upstream. Each round sends its
requests over HTTP, then runs what a user's cron job runs: `ttc requests export`, then
`ttc router flywheel --config flywheel.yaml` (labels charged to a tenant of their own), and
waits until the gateway has hot-reloaded a promoted artifact. With `feedback_rows`, "users" leave
feedback (the served answer's recorded correctness) through `POST /v1/feedback` on the first
answers of each round until that many are given; the flywheel reads it from the request log.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import httpx
import orjson
import yaml

from gateway.auth import hash_key
from router.artifact import read_manifest
from router.lab.flywheel import FlywheelConfig, FlywheelReport
from testkit.replay_upstream import JUDGE, RecordedAnswers, ReplayUpstream
from testkit.servers import REPO, ProcessServer, ThreadedServer, free_port, process_env, ttc_command

TRAFFIC, LABELER, PROBE = "traffic", "labeler", "probe"
KEYS = {TRAFFIC: "sk-sim-traffic", LABELER: "sk-sim-labeler", PROBE: "sk-sim-probe"}
EXPLORE_RATE = 0.05
MAX_TOKENS = 1024  # above every recorded completion, so no answer is cut or held short
CONCURRENCY = 4  # a few clients at once, as traffic would come; more only queues on 2 CPUs


def gateway_config(upstream: str, prices: dict[str, dict[str, float]], artifact: Path, work: Path) -> dict[str, object]:
    """The candidates and the judge on the replay upstream, `auto` routed by `artifact`."""

    def model(name: str, price: dict[str, float]) -> dict[str, object]:
        return {"name": name, "price": price, "max_output_tokens": MAX_TOKENS, "max_retries": 0,
                "litellm_params": {"model": f"openai/{name}", "api_base": upstream + "/v1", "api_key": "replay"}}

    candidates = sorted(prices)
    # The judge has a price so that labelling shows up on the labeler's account like any call.
    judge_price = {"input_per_1m": 0.1, "output_per_1m": 0.1}
    return {
        "models": [model(m, prices[m]) for m in candidates] + [model(JUDGE, judge_price)],
        "tenants": [
            {"id": TRAFFIC, "api_key_hashes": [hash_key(KEYS[TRAFFIC])], "allowed_models": candidates,
             "log_content": True, "routing": {"explore_rate": EXPLORE_RATE}},
            {"id": LABELER, "api_key_hashes": [hash_key(KEYS[LABELER])], "allowed_models": ["*"]},
            # Asks which router is served; no exploration and no content, and never exported.
            {"id": PROBE, "api_key_hashes": [hash_key(KEYS[PROBE])], "allowed_models": candidates},
        ],
        "router": {"artifact": str(artifact)},
        "ledger": {"path": str(work / "ledger.db")},
        "request_log": {"path": str(work / "requests.db"), "flush_interval_s": 0.1},
        "server": {"watch_interval_s": 0.5},
    }


class GatewayRounds:
    """Runs flywheel rounds through a live gateway; a context manager owning both servers."""

    def __init__(self, answers: RecordedAnswers, prices: dict[str, dict[str, float]], serving: Path, work: Path,
                 probe_prompt: str, feedback_rows: int = 0) -> None:
        self.answers = answers
        self.feedback_left = feedback_rows
        self.work = work
        self.probe_prompt = probe_prompt  # a recorded prompt: the replay upstream answers only those
        self.serving = serving
        self.config_path = work / "gateway.yaml"
        self.upstream = ThreadedServer(ReplayUpstream(answers), health_path="/health")
        self.prices = prices
        self.stack = ExitStack()
        self.gateway: ProcessServer | None = None

    def __enter__(self) -> GatewayRounds:
        self.stack.enter_context(self.upstream)
        config = gateway_config(self.upstream.url, self.prices, self.serving, self.work)
        self.config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        port = free_port()
        self.gateway = ProcessServer(ttc_command("serve", "--config", str(self.config_path), "--port", str(port),
                                                 "--log-level", "warning"), port, log_path=self.work / "gateway.log")
        self.stack.enter_context(self.gateway)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    @property
    def url(self) -> str:
        assert self.gateway is not None, "use GatewayRounds as a context manager"
        return self.gateway.url

    def run(self, round_no: int, traffic: list[str], config: FlywheelConfig) -> tuple[FlywheelReport, dict[str, object]]:
        """One round: the traffic over HTTP, the export, the flywheel CLI, the hot reload.
        Returns the round's report and what the gateway said it served (request ids are the
        gateway's own, so `round_no` is not needed)."""
        since = time.time()
        served = asyncio.run(self._send(traffic))
        self._export(config.log, since, len(traffic))
        if self.feedback_left > 0:
            served["feedback_posted"] = asyncio.run(self._leave_feedback(config.log))
        flywheel_yaml = self.work / "flywheel.yaml"
        flywheel_yaml.write_text(yaml.safe_dump(config.model_copy(update={"gateway_config": self.config_path})
                                                .model_dump(mode="json")), encoding="utf-8")
        self._cli("router", "flywheel", "--config", str(flywheel_yaml))
        report = newest_report(self.serving)
        expected = read_manifest(self.serving).version
        return report, {**served, "artifact_version": expected, "gateway_version_after": self._await_version(expected)}

    async def _send(self, traffic: list[str]) -> dict[str, object]:
        """Every prompt as a user's `auto` request; which router versions answered, how many explored."""
        versions: Counter[str] = Counter()
        explored = 0
        gate = asyncio.Semaphore(CONCURRENCY)
        async with httpx.AsyncClient(base_url=self.url, headers={"authorization": f"Bearer {KEYS[TRAFFIC]}"},
                                     timeout=120) as client:

            async def one(prompt: str) -> None:
                nonlocal explored
                async with gate:
                    response = await client.post("/v1/chat/completions", json={
                        "model": "auto", "max_tokens": MAX_TOKENS, "messages": [{"role": "user", "content": prompt}]})
                response.raise_for_status()  # a failed request is a broken harness, not traffic to learn from
                router = response.json()["ttc"]["router"]
                versions[str(router["version"])] += 1
                explored += bool(router.get("explored"))

            await asyncio.gather(*(one(p) for p in traffic))
        return {"requests": len(traffic), "explored": explored, "router_versions": dict(versions)}

    async def _leave_feedback(self, log: Path) -> int:
        """Users rate served answers (their recorded correctness) over HTTP, up to the run's total."""
        entries = [orjson.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
        chosen = entries[: self.feedback_left]
        async with httpx.AsyncClient(base_url=self.url, headers={"authorization": f"Bearer {KEYS[TRAFFIC]}"},
                                     timeout=60) as client:
            for entry in chosen:
                prompt = str(entry["messages"][-1]["content"])
                score = self.answers.score(prompt, str(entry["served_model"]))
                response = await client.post("/v1/feedback", json={"request_id": entry["request_id"], "score": score})
                response.raise_for_status()
        self.feedback_left -= len(chosen)
        return len(chosen)

    def _export(self, out: Path, since: float, expected: int, attempts: int = 10) -> None:
        """`ttc requests export` of this round's traffic, once the log writer has flushed all of it."""
        for _ in range(attempts):
            self._cli("requests", "export", "--config", str(self.config_path), "--tenant", TRAFFIC,
                      "--since", f"{since:.3f}", "--out", str(out))
            if sum(1 for line in out.read_text(encoding="utf-8").splitlines() if line.strip()) >= expected:
                return
            time.sleep(1.0)
        raise RuntimeError(f"the request log holds fewer than {expected} rows of this round after {attempts} exports")

    def _await_version(self, expected: str, timeout_s: float = 60.0) -> str:
        """The version a router-picked request reports, polled until it is `expected` (the watcher's
        reload), or what it still is when the time is up."""
        deadline = time.monotonic() + timeout_s
        seen = ""
        while time.monotonic() < deadline:
            response = httpx.post(self.url + "/v1/chat/completions", headers={"authorization": f"Bearer {KEYS[PROBE]}"},
                                  json={"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": self.probe_prompt}]},
                                  timeout=60)
            if response.status_code == 200:
                seen = str(response.json()["ttc"]["router"]["version"])
                if seen == expected:
                    return seen
            time.sleep(0.5)
        return seen

    def _cli(self, *args: str) -> None:
        result = subprocess.run(ttc_command(*args), cwd=REPO, env=process_env(), capture_output=True, text=True, timeout=1800)
        if result.returncode != 0:
            raise RuntimeError(f"ttc {' '.join(args[:2])} exited {result.returncode}: {result.stderr[-3000:]}")


def newest_report(artifact: Path) -> FlywheelReport:
    """The report `ttc router flywheel` wrote beside the artifact for the round just run."""
    reports = sorted((artifact.parent / f"{artifact.name}.flywheel").glob("round-*.json"))
    if not reports:
        raise RuntimeError(f"no flywheel report beside {artifact}")
    return FlywheelReport.model_validate(orjson.loads(reports[-1].read_bytes()))
