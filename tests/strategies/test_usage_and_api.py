"""Usage sums every internal call; fan-out without native n; progress events; request spec."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from strategies.base import ProgressEvent
from strategies.budget import InMemoryBudget
from strategies.runner import run_strategy
from strategies.spec import TTCSpec, TTCSpecError, forced_single_reason, parse_spec

from .fakes import ScriptedGenerator

MSGS = [{"role": "user", "content": "What is 6*7?"}]
PARAMS = {"max_tokens": 20}


async def test_usage_sums_all_calls_and_calls_have_gateway_shape() -> None:
    gen = ScriptedGenerator({"draft": ["d"], "critique": ["VERDICT: REVISE fix it", "VERDICT: ACCEPT"],
                             "revise": ["r"]}, prompt_tokens=7, completion_tokens=5)
    res = await run_strategy(MSGS, TTCSpec(strategy="refine", rounds=3), generator=gen, budget=InMemoryBudget(),
                             params=PARAMS)
    assert [c.role for c in res.calls] == ["draft", "critique", "revise", "critique"]
    assert res.usage.as_dict() == {"prompt_tokens": 28, "completion_tokens": 20, "total_tokens": 48}
    ttc = res.ttc_dict()
    assert set(ttc["calls"][0]) == {"model", "role", "prompt_tokens", "completion_tokens", "cost_usd"}
    assert ttc["cost_usd"] == pytest.approx(sum(c["cost_usd"] for c in ttc["calls"]))


async def test_native_n_is_one_request_and_prompt_billed_once() -> None:
    gen = ScriptedGenerator({"sample": ["\\boxed{1}"]})
    res = await run_strategy(MSGS, TTCSpec(strategy="best_of_n", n=5), generator=gen, budget=InMemoryBudget(),
                             params=PARAMS)
    assert [c.n for c in gen.calls] == [5]
    assert len(res.calls) == 5 and res.usage.prompt_tokens == 10 and res.usage.completion_tokens == 100


async def test_without_native_n_samples_fan_out_in_parallel_calls() -> None:
    gen = ScriptedGenerator({"sample": ["\\boxed{1}"]}, native_n=False)
    res = await run_strategy(MSGS, TTCSpec(strategy="best_of_n", n=4), generator=gen, budget=InMemoryBudget(),
                             params=PARAMS)
    assert [c.n for c in gen.calls] == [1, 1, 1, 1]
    assert res.usage.prompt_tokens == 40 and len(res.calls) == 4


async def test_sampling_temperature_raised_for_votes_but_kept_when_set() -> None:
    gen = ScriptedGenerator({"sample": ["\\boxed{1}"]})
    await run_strategy(MSGS, TTCSpec(strategy="best_of_n", n=2), generator=gen, budget=InMemoryBudget(),
                       params={"max_tokens": 20, "temperature": 0})
    await run_strategy(MSGS, TTCSpec(strategy="best_of_n", n=2), generator=gen, budget=InMemoryBudget(),
                       params={"max_tokens": 20, "temperature": 0.3, "n": 9, "stream": True})
    assert gen.calls[0].params["temperature"] == 0.7
    assert gen.calls[1].params == {"max_tokens": 20, "temperature": 0.3}


async def test_progress_reports_final_once_after_internal_events() -> None:
    events: list[ProgressEvent] = []

    async def on(e: ProgressEvent) -> None:
        events.append(e)

    gen = ScriptedGenerator({"sample": ["\\boxed{1}", "\\boxed{1}", "\\boxed{1}", "\\boxed{2}"]})
    res = await run_strategy(MSGS, TTCSpec(strategy="adaptive", n=6), generator=gen, budget=InMemoryBudget(),
                             params=PARAMS, progress=on)
    kinds = [e.kind for e in events]
    assert kinds.count("final") == 1 and kinds[-1] == "final"
    assert events[-1].text == res.text
    assert "call_start" in kinds and "wave_end" in kinds


def test_parse_spec_merges_defaults_and_rejects_bad_input() -> None:
    spec = parse_spec({"strategy": "best_of_n", "n": 8}, {"strategy": "adaptive", "selector": "reward"})
    assert (spec.strategy, spec.n, spec.selector) == ("best_of_n", 8, "reward")
    assert parse_spec(None, None).strategy == "adaptive"
    for bad in ({"strategey": "x"}, {"n": 0}, {"selector": "vibes"}, {"extractor": "nope"}, "best_of_n"):
        with pytest.raises(TTCSpecError):
            parse_spec(bad)


async def test_tools_or_n_force_single() -> None:
    assert forced_single_reason(tools=[{"type": "function"}]) is not None
    assert forced_single_reason(n=2) is not None
    assert forced_single_reason(tools=None, n=1) is None
    gen = ScriptedGenerator({"sample": ["hi"]})
    reason = forced_single_reason(n=3)
    res = await run_strategy(MSGS, TTCSpec(strategy="best_of_n", n=8), generator=gen, budget=InMemoryBudget(),
                             params=PARAMS, forced_single=reason)
    assert res.strategy.name == "single" and res.strategy.reason == reason and len(gen.calls) == 1


def test_strategies_never_import_gateway_or_router() -> None:
    root = Path(__file__).resolve().parents[2] / "strategies"
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.split(".")[0] in ("gateway", "router", "redis", "httpx", "fastapi"), (path, name)
    out = subprocess.run(
        [sys.executable, "-c", "import strategies, strategies.cli, sys; "
         "print(sorted(m for m in sys.modules if m.split('.')[0] in ('gateway','router','litellm')))"],
        capture_output=True, text=True, cwd=root.parent, check=True,
    )
    assert out.stdout.strip() == "[]"
