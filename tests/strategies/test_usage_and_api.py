"""Usage sums every internal call; fan-out without native n; progress events; request spec."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from strategies.base import ProgressEvent
from strategies.lab.budget import InMemoryBudget
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


STRATEGIES_ROOT = Path(__file__).resolve().parents[2] / "strategies"


def imported_modules(path: Path, root: Path = STRATEGIES_ROOT) -> list[str]:
    """Absolute names of every module `path` imports, anywhere in it (relative imports resolved)."""
    package = ["strategies", *path.relative_to(root).parent.parts]
    out: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            # `from . import lab` imports a module by its alias name.
            out += [base] + [f"{base}.{a.name}" for a in node.names]
    return out


def runtime_modules(root: Path = STRATEGIES_ROOT) -> list[Path]:
    """Everything serving may import: `strategies/` outside `strategies/lab/`. `__main__`
    (`python -m strategies`, the lab's CLI without a gateway) is an entry point, never imported."""
    return [p for p in root.rglob("*.py") if "lab" not in p.relative_to(root).parts and p.name != "__main__.py"]


def test_strategies_never_import_gateway_or_router() -> None:
    root = STRATEGIES_ROOT
    for path in root.rglob("*.py"):
        for name in imported_modules(path):
            assert not name.split(".")[0] in ("gateway", "router", "redis", "httpx", "fastapi"), (path, name)
    out = subprocess.run(
        [sys.executable, "-c", "import strategies, strategies.lab.cli, sys; "
         "print(sorted(m for m in sys.modules if m.split('.')[0] in ('gateway','router','litellm')))"],
        capture_output=True, text=True, cwd=root.parent, check=True,
    )
    assert out.stdout.strip() == "[]"


def test_runtime_never_imports_the_lab() -> None:
    runtime = runtime_modules()
    assert {"policy.py", "adaptive.py", "runner.py"} <= {p.name for p in runtime}
    for path in runtime:
        for name in imported_modules(path):
            assert name != "strategies.lab" and not name.startswith("strategies.lab."), (path, name)
    # And at import time: loading every runtime module loads no lab module.
    names = sorted(".".join(["strategies", *(x for x in p.relative_to(STRATEGIES_ROOT).with_suffix("").parts
                                             if x != "__init__")]) for p in runtime)
    out = subprocess.run(
        [sys.executable, "-c", f"import importlib, sys; [importlib.import_module(m) for m in {names!r}]; "
         "print(sorted(m for m in sys.modules if m.startswith('strategies.lab')))"],
        capture_output=True, text=True, cwd=STRATEGIES_ROOT.parent, check=True,
    )
    assert out.stdout.strip() == "[]"


def test_the_import_check_sees_lab_imports_in_any_form(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.py").write_text("def f() -> None:\n    from .lab.cli import make_app\n")
    (tmp_path / "b.py").write_text("from . import lab\n")
    (tmp_path / "sub" / "c.py").write_text("from ..lab import fit_policy\nimport strategies.lab.replay\n")
    assert "strategies.lab.cli" in imported_modules(tmp_path / "a.py", tmp_path)
    assert "strategies.lab" in imported_modules(tmp_path / "b.py", tmp_path)
    got = imported_modules(tmp_path / "sub" / "c.py", tmp_path)
    assert "strategies.lab.fit_policy" in got and "strategies.lab.replay" in got
