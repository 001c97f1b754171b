"""Issue 6 replay targets on math_cot_100, seeds 0-19 (reads ../shared/data in place).

adaptive >= majority@8 - 0.5 points, >= single + 1 point, with <= 50% of majority@8's
completion tokens. The learned policy is cross-fitted: no problem is run with a
policy that saw it.
"""

from pathlib import Path

import pytest

from strategies.lab.convert import convert_file
from strategies.lab.evaluation import EvalResult, cross_fit, evaluate
from strategies.lab.replay import ReplayProblem, load_replay
from strategies.spec import TTCSpec

SRC = Path(__file__).resolve().parents[3] / "shared" / "data" / "math_samples" / "math_cot_100.jsonl"
SEEDS = 20


@pytest.fixture(scope="module")
def problems(tmp_path_factory: pytest.TempPathFactory) -> list[ReplayProblem]:
    if not SRC.exists():
        pytest.skip(f"shared data not found at {SRC}")
    out = tmp_path_factory.mktemp("replay") / "math_cot_100.jsonl"
    convert_file(SRC, out, with_text=False)
    return load_replay(out)


@pytest.fixture(scope="module")
def baselines(problems: list[ReplayProblem]) -> tuple[EvalResult, EvalResult]:
    single = evaluate(problems, TTCSpec(strategy="single"), SEEDS)
    maj8 = evaluate(problems, TTCSpec(strategy="best_of_n", n=8, selector="majority"), SEEDS)
    return single, maj8


def check_targets(adaptive: EvalResult, single: EvalResult, maj8: EvalResult) -> None:
    assert adaptive.accuracy >= maj8.accuracy - 0.005, (adaptive.summary(), maj8.summary())
    assert adaptive.accuracy >= single.accuracy + 0.01, (adaptive.summary(), single.summary())
    assert adaptive.mean_completion_tokens <= 0.5 * maj8.mean_completion_tokens, (adaptive.summary(), maj8.summary())


def test_baselines_match_the_recorded_set(baselines: tuple[EvalResult, EvalResult]) -> None:
    single, maj8 = baselines
    assert single.accuracy == pytest.approx(0.91, abs=0.01)
    assert maj8.accuracy == pytest.approx(0.93, abs=1e-9)
    assert maj8.mean_calls == 8.0 and single.mean_calls == 1.0


def test_adaptive_default_rule_meets_targets(problems: list[ReplayProblem], baselines: tuple) -> None:
    adaptive = evaluate(problems, TTCSpec(strategy="adaptive", n=8), SEEDS)
    check_targets(adaptive, *baselines)


def test_adaptive_learned_policy_meets_targets_on_held_out_folds(problems: list[ReplayProblem], baselines: tuple) -> None:
    lookup, policies = cross_fit(problems, folds=5, max_n=8)  # fit_policy defaults
    assert len({id(p) for p in policies}) == 5
    adaptive = evaluate(problems, TTCSpec(strategy="adaptive", n=8), SEEDS, policy_for=lookup)
    check_targets(adaptive, *baselines)
