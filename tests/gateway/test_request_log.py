"""The request log through real HTTP with the OpenAI SDK, on SQLite and on a real PostgreSQL:
one row per request of every kind, content only for tenants that opted in, tenant scoping on
reads and feedback."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from gateway.auth import hash_key
from testkit.servers import ThreadedServer
from tests.gateway.conftest import ADMIN_KEY, OTHER_KEY, TENANT_KEY, RunningGateway, base_config, fake_model
from tests.gateway.requestlog_support import rows

POOR_KEY = "sk-test-tenant-poor"
MESSAGES = [{"role": "user", "content": "one two three four five"}]
BEST_OF_2 = {"ttc": {"strategy": "best_of_n", "n": 2}}


def log_config(upstream: str, tmp_path: Path, section: dict[str, Any]) -> dict[str, Any]:
    config = base_config(upstream, tmp_path, request_log=section)
    config["models"].append(fake_model("embedder", upstream, "emb", mode="embedding"))
    tenant_a, tenant_b = config["tenants"]
    tenant_a.update({"allowed_models": ["fast", "embedder"], "log_content": True})
    tenant_b.update({"allowed_models": ["fast", "private"]})
    config["tenants"].append({"id": "tenant-poor", "api_key_hashes": [hash_key(POOR_KEY)], "allowed_models": ["fast"],
                              "budgets": [{"window": "day", "limit_usd": 0.000001}]})
    return config


def get(gw: RunningGateway, path: str, key: str) -> httpx.Response:
    return httpx.get(gw.url + path, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def post(gw: RunningGateway, path: str, key: str, body: object) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.post(gw.url + path, content=content, timeout=30,
                      headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})


def by_id(found: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for row in found:
        out.setdefault(row["request_id"], []).append(row)
    return out


def test_every_kind_of_request_is_one_row(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway],
                                          tmp_path: Path, log_section: dict[str, Any]) -> None:
    gw = start_gateway(log_config(fake_upstream.url, tmp_path, log_section))
    client = gw.client(TENANT_KEY)
    ids: dict[str, str] = {}

    raw = client.chat.completions.with_raw_response.create(model="fast", messages=MESSAGES, max_tokens=8)
    ids["plain"] = raw.headers["x-request-id"]
    plain_text = raw.parse().choices[0].message.content
    raw_stream = client.chat.completions.with_raw_response.create(model="fast", messages=MESSAGES, max_tokens=8, stream=True)
    ids["stream"] = raw_stream.headers["x-request-id"]
    for _ in raw_stream.parse():
        pass
    raw = client.chat.completions.with_raw_response.create(model="fast", messages=MESSAGES, max_tokens=8, extra_body=BEST_OF_2)
    ids["strategy"] = raw.headers["x-request-id"]
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="no-such-model", messages=MESSAGES)
    ids["unknown"] = unknown.value.response.headers["x-request-id"]
    with pytest.raises(openai.RateLimitError) as poor:
        gw.client(POOR_KEY).chat.completions.create(model="fast", messages=MESSAGES, max_tokens=8)
    ids["budget"] = poor.value.response.headers["x-request-id"]
    raw_embed = client.embeddings.with_raw_response.create(model="embedder", input=["one two"])
    ids["embeddings"] = raw_embed.headers["x-request-id"]

    logged = by_id(rows(gw.url, ADMIN_KEY))
    for kind, request_id in ids.items():
        assert len(logged.get(request_id, [])) == 1, f"{kind}: {logged.get(request_id)}"
    assert len(logged) == len(ids)  # nothing else, nothing twice
    row = {kind: logged[request_id][0] for kind, request_id in ids.items()}

    plain = row["plain"]
    assert (plain["tenant"], plain["requested_model"], plain["served_model"], plain["status"]) == ("tenant-a", "fast", "fast", "200")
    assert plain["endpoint"].endswith("chat/completions") and plain["error_code"] is None
    assert plain["key_id"] == hash_key(TENANT_KEY).split(":")[1][:12]
    assert [c["model"] for c in plain["calls"]] == ["fast"] and plain["prompt_tokens"] > 0 and plain["cost_usd"] > 0
    assert plain["latency_s"] > 0 and plain["strategy"] in (None, "single")
    # tenant-a opted in: the content, and its hashes
    assert plain["messages"] == MESSAGES and plain["response_text"] == plain_text
    assert plain["prompt_sha256"] == hashlib.sha256(orjson.dumps(MESSAGES, option=orjson.OPT_SORT_KEYS)).hexdigest()
    assert plain["response_sha256"] == hashlib.sha256(plain_text.encode()).hexdigest()

    assert row["stream"]["status"] == "200" and row["stream"]["first_byte_s"] is not None
    assert row["stream"]["response_text"]

    strategy = row["strategy"]
    assert strategy["strategy"] == "best_of_n" and strategy["strategy_n"] == 2 and strategy["degraded"] is False
    assert len(strategy["calls"]) >= 2

    assert (row["unknown"]["status"], row["unknown"]["error_code"]) == ("404", "model_not_found")
    assert row["unknown"]["calls"] == [] and row["unknown"]["cost_usd"] == 0
    assert (row["budget"]["tenant"], row["budget"]["status"], row["budget"]["error_code"]) == ("tenant-poor", "429", "insufficient_quota")
    embed = row["embeddings"]
    assert embed["endpoint"].endswith("embeddings") and embed["status"] == "200" and embed["served_model"] == "embedder"

    one = get(gw, f"/v1/requests/{ids['strategy']}", TENANT_KEY).json()
    assert one["request_id"] == ids["strategy"] and one["feedback"] is None and one["calls"] == strategy["calls"]


def test_content_only_for_tenants_that_opt_in(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway],
                                             tmp_path: Path, log_section: dict[str, Any]) -> None:
    gw = start_gateway(log_config(fake_upstream.url, tmp_path, log_section))
    raw = gw.client(OTHER_KEY).chat.completions.with_raw_response.create(model="fast", messages=MESSAGES, max_tokens=8)
    text = raw.parse().choices[0].message.content
    response = get(gw, f"/v1/requests/{raw.headers['x-request-id']}", OTHER_KEY)
    row = response.json()
    assert row["log_content"] is False and row["messages"] is None and row["response_text"] is None
    assert row["prompt_sha256"] == hashlib.sha256(orjson.dumps(MESSAGES, option=orjson.OPT_SORT_KEYS)).hexdigest()
    assert row["response_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert "one two three" not in response.text and OTHER_KEY not in response.text  # neither content nor key


def test_tenant_scoping_feedback_and_pages(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway],
                                           tmp_path: Path, log_section: dict[str, Any]) -> None:
    gw = start_gateway(log_config(fake_upstream.url, tmp_path, log_section))
    mine = [gw.client(TENANT_KEY).chat.completions.with_raw_response.create(model="fast", messages=MESSAGES, max_tokens=4)
            .headers["x-request-id"] for _ in range(5)]
    theirs = gw.client(OTHER_KEY).chat.completions.with_raw_response.create(model="private", messages=MESSAGES, max_tokens=4)
    their_id = theirs.headers["x-request-id"]

    # reads: a tenant sees its own rows only; another tenant's id is 404; the admin sees all
    assert {r["request_id"] for r in rows(gw.url, TENANT_KEY)} == set(mine)
    assert get(gw, f"/v1/requests/{their_id}", TENANT_KEY).status_code == 404
    assert get(gw, "/v1/requests?tenant=tenant-b", TENANT_KEY).status_code == 404
    assert {r["request_id"] for r in rows(gw.url, ADMIN_KEY)} == {*mine, their_id}
    assert [r["request_id"] for r in rows(gw.url, ADMIN_KEY, tenant="tenant-b")] == [their_id]
    assert get(gw, f"/v1/requests/{their_id}", ADMIN_KEY).json()["tenant"] == "tenant-b"

    # pages: newest first, disjoint, complete
    first = get(gw, "/v1/requests?limit=2", TENANT_KEY).json()
    assert first["has_more"] and len(first["data"]) == 2
    second = get(gw, f"/v1/requests?limit=10&cursor={first['next_cursor']}", TENANT_KEY).json()
    paged = [r["request_id"] for r in first["data"] + second["data"]]
    assert paged == list(reversed(mine)) and not second["has_more"]
    times = [r["time"] for r in first["data"] + second["data"]]
    assert times == sorted(times, reverse=True)
    # filters
    assert {r["request_id"] for r in rows(gw.url, ADMIN_KEY, model="private")} == {their_id}
    assert rows(gw.url, ADMIN_KEY, status="404") == []
    after = get(gw, f"/v1/requests/{mine[2]}", TENANT_KEY).json()["time"]
    assert {r["request_id"] for r in rows(gw.url, TENANT_KEY, since=str(after))} == set(mine[2:])
    assert {r["request_id"] for r in rows(gw.url, TENANT_KEY, until=str(after))} == set(mine[:2])

    # feedback: own requests only; repeated feedback replaces; bad bodies are 400 in OpenAI's shape
    assert post(gw, "/v1/feedback", TENANT_KEY, {"request_id": their_id, "score": 1}).status_code == 404
    assert post(gw, "/v1/feedback", TENANT_KEY, {"request_id": "no-such-id", "score": 1}).status_code == 404
    assert post(gw, "/v1/feedback", TENANT_KEY, {"request_id": mine[0], "score": 0.9}).status_code == 200
    replaced = post(gw, "/v1/feedback", TENANT_KEY, {"request_id": mine[0], "score": 0.25, "label": "wrong", "comment": "no"})
    assert replaced.status_code == 200
    feedback = get(gw, f"/v1/requests/{mine[0]}", TENANT_KEY).json()["feedback"]
    assert (feedback["score"], feedback["label"], feedback["comment"]) == (0.25, "wrong", "no")
    assert get(gw, f"/v1/requests/{their_id}", OTHER_KEY).json()["feedback"] is None
    for bad in ({"request_id": mine[0], "score": 1.5}, {"score": 0.5}, {"request_id": mine[0], "score": 0.5, "extra": 1},
                b"{not json"):
        response = post(gw, "/v1/feedback", TENANT_KEY, bad)
        assert response.status_code == 400, response.text
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert get(gw, "/v1/requests?cursor=garbage", TENANT_KEY).status_code == 400
    assert get(gw, "/v1/requests?since=yesterday", TENANT_KEY).status_code == 400
    assert get(gw, "/v1/requests", "sk-wrong").status_code == 401


def test_export_streams_the_range_as_jsonl(fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway],
                                           tmp_path: Path, log_section: dict[str, Any]) -> None:
    from typer.testing import CliRunner

    from gateway.commands.requests import app

    gw = start_gateway(log_config(fake_upstream.url, tmp_path, log_section))
    sent = [gw.client(TENANT_KEY).chat.completions.with_raw_response.create(model="fast", messages=MESSAGES, max_tokens=4)
            .headers["x-request-id"] for _ in range(4)]
    gw.client(OTHER_KEY).chat.completions.create(model="fast", messages=MESSAGES, max_tokens=4)
    logged = {r["request_id"]: r for r in rows(gw.url, ADMIN_KEY)}  # also waits until they are written
    out = tmp_path / "export.jsonl"
    since = logged[sent[1]]["time"]
    result = CliRunner().invoke(app, ["export", "--config", str(gw.config_path), "--since", str(since),
                                      "--tenant", "tenant-a", "--format", "jsonl", "--out", str(out)])
    assert result.exit_code == 0, result.output
    exported = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [r["request_id"] for r in exported] == sent[1:]  # oldest first, in range, one tenant
    assert exported[0] == logged[sent[1]]
    bad = CliRunner().invoke(app, ["export", "--config", str(gw.config_path), "--since", "yesterday"])
    assert bad.exit_code == 2


def test_exploration_spreads_auto_requests_and_logs_propensities(
        fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path,
        log_section: dict[str, Any]) -> None:
    from gateway.defaults import BUILTIN_ROUTER

    config = log_config(fake_upstream.url, tmp_path, log_section)
    config["models"] += [fake_model("small", fake_upstream.url, router_name="smollm2-135m"),
                         fake_model("large", fake_upstream.url, router_name="gemma3-270m")]
    config["tenants"][0].update({"allowed_models": ["small", "large"], "routing": {"explore_rate": 1.0}})
    config["tenants"][1].update({"allowed_models": ["small", "large"]})  # no exploration: the router's pick
    config["router"] = {"artifact": str(BUILTIN_ROUTER)}
    gw = start_gateway(config)
    routed = [gw.client(TENANT_KEY).chat.completions.create(model="auto", messages=MESSAGES, max_tokens=4)
              for _ in range(24)]
    assert all(r.model_extra["ttc"]["router"]["explored"] is True for r in routed)  # type: ignore[index]
    logged = rows(gw.url, TENANT_KEY)
    assert len(logged) == 24
    served = [r["served_model"] for r in logged]
    assert set(served) == {"small", "large"}  # P(all 24 draws alike) = 2 * 2**-24
    assert all(r["explored"] is True and r["propensity"] == 0.5 and r["requested_model"] == "auto" for r in logged)
    assert all(r["router"]["router_pick"] in ("small", "large") and r["router_version"] for r in logged)
    plain = gw.client(OTHER_KEY).chat.completions.with_raw_response.create(model="auto", messages=MESSAGES, max_tokens=4)
    row = get(gw, f"/v1/requests/{plain.headers['x-request-id']}", OTHER_KEY).json()
    assert row["explored"] is False and row["propensity"] is None and "explored" not in row["router"]
    assert row["served_model"] == row["router"]["model"]


def test_a_prompt_with_nul_is_logged_and_blocks_no_other_row(
        fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path,
        log_section: dict[str, Any]) -> None:
    # PostgreSQL's text and jsonb refuse NUL: such a row must neither be lost nor, spooled and
    # replayed forever, hold back the rows after it.
    gw = start_gateway(log_config(fake_upstream.url, tmp_path, log_section))
    client = gw.client(TENANT_KEY)  # tenant-a keeps content
    nul = client.chat.completions.with_raw_response.create(
        model="fast", messages=[{"role": "user", "content": "before\x00after"}], max_tokens=4).headers["x-request-id"]
    after = client.chat.completions.with_raw_response.create(model="fast", messages=MESSAGES, max_tokens=4).headers["x-request-id"]
    row = get(gw, f"/v1/requests/{nul}", TENANT_KEY).json()
    assert row["messages"][0]["content"] in ("before\x00after", "before\ufffdafter")
    assert row["prompt_sha256"] == hashlib.sha256(orjson.dumps([{"role": "user", "content": "before\x00after"}],
                                                                option=orjson.OPT_SORT_KEYS)).hexdigest()
    assert get(gw, f"/v1/requests/{after}", TENANT_KEY).status_code == 200


def test_export_as_parquet_holds_the_same_rows_as_jsonl(
        fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path,
        log_section: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    import gateway.requestlog.parquet as parquet
    from gateway.commands.requests import app

    monkeypatch.setattr(parquet, "ROW_GROUP", 3)  # several row groups from a handful of rows
    gw = start_gateway(log_config(fake_upstream.url, tmp_path, log_section))
    gw.client(TENANT_KEY).chat.completions.create(model="fast", messages=MESSAGES, max_tokens=4, extra_body=BEST_OF_2)
    for _ in range(6):
        gw.client(TENANT_KEY).chat.completions.create(model="fast", messages=MESSAGES, max_tokens=4)
    gw.client(OTHER_KEY).chat.completions.create(model="fast", messages=MESSAGES, max_tokens=4)
    assert len(rows(gw.url, ADMIN_KEY)) == 8  # also waits until they are written
    common = ["export", "--config", str(gw.config_path)]
    out_jsonl, out_parquet = tmp_path / "export.jsonl", tmp_path / "export.parquet"
    result = CliRunner().invoke(app, [*common, "--format", "jsonl", "--out", str(out_jsonl)])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, [*common, "--format", "parquet", "--out", str(out_parquet)])
    assert result.exit_code == 0, result.output

    from_jsonl = [orjson.loads(line) for line in out_jsonl.read_bytes().splitlines()]
    table = pq.ParquetFile(out_parquet)
    assert table.metadata.num_row_groups == 3  # 8 rows, 3 to a group: streamed, not one table
    from_parquet = table.read().to_pylist()
    for row in from_parquet:  # nested fields travel as JSON text
        for column in ("router", "calls", "messages"):
            if row[column] is not None:
                row[column] = orjson.loads(row[column])
    assert len(from_jsonl) == 8 and from_parquet == from_jsonl
    assert any(r["strategy_n"] == 2 and len(r["calls"]) >= 2 for r in from_parquet)
    assert CliRunner().invoke(app, [*common, "--format", "parquet"]).exit_code == 2  # no stdout for parquet


def test_exploration_draws_only_candidates_the_remaining_budget_affords(
        fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path) -> None:
    from gateway.defaults import BUILTIN_ROUTER

    section = {"path": str(tmp_path / "requests.db"), "spool_path": str(tmp_path / "requests.spool"),
               "flush_interval_s": 0.05, "replay_interval_s": 0.2}
    config = log_config(fake_upstream.url, tmp_path, section)
    config["models"] += [fake_model("small", fake_upstream.url, router_name="smollm2-135m"),
                         {**fake_model("large", fake_upstream.url, router_name="gemma3-270m"),
                          "price": {"input_per_1m": 1000.0, "output_per_1m": 2000.0}}]
    # tenant-a: $0.01 left for the day, and no per-request cap; tenant-b: plenty of money.
    config["tenants"][0].update({"allowed_models": ["small", "large"], "routing": {"explore_rate": 1.0},
                                 "budgets": [{"window": "day", "limit_usd": 0.01}]})
    config["tenants"][1].update({"allowed_models": ["small", "large"], "routing": {"explore_rate": 1.0},
                                 "budgets": [{"window": "day", "limit_usd": 100.0}]})
    config["router"] = {"artifact": str(BUILTIN_ROUTER)}
    gw = start_gateway(config)

    poor = [gw.client(TENANT_KEY).chat.completions.create(model="auto", messages=MESSAGES, max_tokens=4) for _ in range(16)]
    costs = {c["model"]: c["expected_cost_usd"] for c in poor[0].model_extra["ttc"]["router"]["candidates"]}  # type: ignore[index]
    assert costs["small"] < 0.01 < costs["large"]  # the premise: only the cheaper one fits what is left
    assert [r.model_extra["ttc"]["router"]["explored"] for r in poor] == [True] * 16  # type: ignore[index]
    logged = rows(gw.url, TENANT_KEY)
    assert len(logged) == 16 and all(r["status"] == "200" for r in logged)
    assert {r["served_model"] for r in logged} == {"small"}  # never explored into the unaffordable one
    assert all(r["explored"] is True and r["propensity"] == 1.0 for r in logged)  # one drawable candidate

    rich = [gw.client(OTHER_KEY).chat.completions.create(model="auto", messages=MESSAGES, max_tokens=4) for _ in range(24)]
    assert {r.model for r in rich} == {"small", "large"}  # the same models, affordable: both drawn (P(fail) = 2**-23)
    assert {r["propensity"] for r in rows(gw.url, OTHER_KEY)} == {0.5}


def test_responses_and_messages_requests_are_one_row_each(
        fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path,
        log_section: dict[str, Any]) -> None:
    import anthropic

    gw = start_gateway(log_config(fake_upstream.url, tmp_path, log_section))
    responses = gw.client(TENANT_KEY)
    messages = anthropic.Anthropic(base_url=gw.url, api_key=TENANT_KEY, max_retries=0)
    ids: dict[str, str] = {}
    ids["responses"] = responses.responses.with_raw_response.create(
        model="fast", input="one two three", max_output_tokens=4).headers["x-request-id"]
    raw = responses.responses.with_raw_response.create(model="fast", input="one two", max_output_tokens=3, stream=True)
    ids["responses-stream"] = raw.headers["x-request-id"]
    for _ in raw.parse():
        pass
    with pytest.raises(openai.NotFoundError) as unknown:
        responses.responses.create(model="no-such-model", input="x")
    ids["responses-error"] = unknown.value.response.headers["x-request-id"]
    ids["messages"] = messages.messages.with_raw_response.create(
        model="fast", max_tokens=4, messages=[{"role": "user", "content": "one two three"}]).headers["x-request-id"]
    with messages.messages.stream(model="fast", max_tokens=3, messages=[{"role": "user", "content": "hi"}]) as stream:
        stream.get_final_message()
        ids["messages-stream"] = stream.response.headers["x-request-id"]
    with pytest.raises(anthropic.NotFoundError) as missing:
        messages.messages.create(model="no-such-model", max_tokens=4, messages=[{"role": "user", "content": "x"}])
    ids["messages-error"] = missing.value.response.headers["x-request-id"]

    logged = by_id(rows(gw.url, ADMIN_KEY))
    for kind, request_id in ids.items():
        assert len(logged.get(request_id, [])) == 1, f"{kind}: {logged.get(request_id)}"
        row = logged[request_id][0]
        assert row["endpoint"] == "/v1/" + kind.split("-")[0], (kind, row["endpoint"])
        assert row["tenant"] == "tenant-a" and row["requested_model"] in ("fast", "no-such-model")
        if kind.endswith("error"):
            assert (row["status"], row["error_code"]) == ("404", "model_not_found"), (kind, row)
        else:
            assert row["status"] == "200" and row["served_model"] == "fast" and row["calls"], (kind, row)
            assert row["response_text"]  # tenant-a keeps content
    assert len(logged) == len(ids)  # nothing else, nothing twice
    assert logged[ids["responses-stream"]][0]["first_byte_s"] is not None
    assert logged[ids["messages-stream"]][0]["first_byte_s"] is not None


def test_with_a_redis_ledger_and_no_ledger_path_the_log_lives_in_the_data_dir(
        fake_upstream: ThreadedServer, start_gateway: Callable[..., RunningGateway], tmp_path: Path, redis_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    cwd, data = tmp_path / "cwd", tmp_path / "data"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("TTC_DATA_DIR", str(data))
    config = base_config(fake_upstream.url, tmp_path, ledger={"redis_url": redis_url, "key_prefix": "datadir"},
                         request_log={"flush_interval_s": 0.05})
    gw = start_gateway(config)
    sent = gw.client(TENANT_KEY).chat.completions.with_raw_response.create(model="fast", messages=MESSAGES, max_tokens=4)
    assert [r["request_id"] for r in rows(gw.url, ADMIN_KEY)] == [sent.headers["x-request-id"]]
    assert (data / "ttc-requests.db").is_file()
    assert not any(p.name.startswith("ttc-requests") for p in cwd.iterdir()), list(cwd.iterdir())
