"""The value policy: reliability-weighted votes, kNN prompt difficulty, stop-vs-one-more tables."""

import random
from pathlib import Path

from strategies.lab.budget import InMemoryBudget
from strategies.lab.evaluation import to_policy_problem
from strategies.lab.fit_value_policy import fit_knn_difficulty, fit_reliability, fit_value_policy
from strategies.lab.replay import ReplayGenerator, ReplayProblem, ReplaySample
from strategies.lab.simulate import Problem, simulate, simulate_per_problem
from strategies.policy import ConsistencyPolicy, load_policy
from strategies.reliability import ReliabilityModel, prompt_numbers
from strategies.runner import run_strategy
from strategies.spec import TTCSpec
from strategies.value_policy import ValuePolicy
from strategies.votes import tally

from .fakes import ScriptedGenerator


def test_prompt_numbers_and_echo_category() -> None:
    nums = prompt_numbers("Tom has 1,200 apples and 7 pears.")
    assert nums == frozenset({1200.0, 7.0})
    model = ReliabilityModel([15, 30], {"echo": 0.1, "L0": 1.0, "L1": 0.5, "L2": 0.2})
    assert model.category("7", 10, nums) == "echo"
    assert model.category("1207", 10, nums) == "L0"
    assert model.category("1207", 16, nums) == "L1"
    assert model.category("1207", 40, nums) == "L2"
    assert model.category("x", 15, nums) == "L0"  # not a number: never an echo
    assert model.weight("unseen", 15, nums) == 1.0


def test_fit_reliability_downweights_unreliable_categories() -> None:
    nums = frozenset({3.0, 4.0})
    rows = []
    for i in range(300):
        rows.append(("3", 12, nums, i % 20 == 0))  # echoes a prompt number: rarely right
        rows.append(("7", 12, nums, i % 2 == 0))  # short, new number: right half the time
        rows.append(("9", 40, nums, i % 10 == 0))  # ran to the cap
    model = fit_reliability(rows, bins=3)
    assert model.length_edges == [39]  # the cap (40) opens a bin of its own
    assert model.weight("7", 12, nums) == 1.0
    assert model.weight("3", 12, nums) < 0.2
    assert 0.1 < model.weight("9", 40, nums) < 0.4
    again = ReliabilityModel.from_json(model.to_json())
    assert again.weight("9", 40, nums) == round(model.weight("9", 40, nums), 6)


def test_weighted_tally_changes_the_leader_only_when_weights_say_so() -> None:
    keys = ["3", "3", "7"]
    assert tally(keys).leader == "3"
    t = tally(keys, None, [0.1, 0.1, 1.0])
    assert t.leader == "7" and t.weight_of(0) == 1.0 and abs(t.weight_of(1) - 0.2) < 1e-9
    assert t.top == 1 and t.second == 2 and t.distinct == 2


def test_knn_difficulty_reads_similar_prompts_and_leaves_one_out() -> None:
    prompts = ["bottle caps in a box", "bottle caps in a bag", "apples on a tree", "apples on a table"]
    knn = fit_knn_difficulty(prompts, [0.0, 0.0, 1.0, 1.0], k=1)
    assert knn.predict("how many bottle caps in a box") == 0.0
    assert knn.predict("apples on a tree", exclude=2) == 1.0  # its neighbour, not itself
    assert knn.predict("bottle caps in a box", exclude=0) == 0.0


def synthetic(seed: int) -> list[Problem]:
    """Three kinds of prompt: easy (unanimous, right), hopeless (scattered wrong answers, and
    their prompts say so), contested (right answer a slim plurality, wrong ones echo the prompt)."""
    rng = random.Random(seed)
    out = []
    for i in range(90):
        kind = i % 3
        if kind == 0:
            answers: list[str | None] = ["12"] * 12
            correct = [True] * 12
            prompt = f"Easy story {i}: Ann has 5 red marbles and 7 blue marbles."
        elif kind == 1:
            answers = [str(100 + rng.randrange(50)) for _ in range(12)]
            correct = [False] * 12
            prompt = f"Hopeless riddle {i}: a train leaves at 3 and another at 4."
        else:
            answers = ["20"] * 5 + ["4"] * 4 + ["9"] * 3
            rng.shuffle(answers)
            correct = [a == "20" for a in answers]
            prompt = f"Contested sum {i}: 4 boxes hold 5 pens each, and 9 are lost."
        out.append(Problem(answers, [None] * 12, correct, [20] * 12, prompt=prompt))
    return out


def test_fitted_value_policy_saves_tokens_keeps_accuracy_and_round_trips(tmp_path: Path) -> None:
    train, test = synthetic(0), synthetic(1)
    pol = fit_value_policy(train, max_n=12, token_budget=0.4, perms=10, knn_k=3)
    full = simulate(ConsistencyPolicy(12, [12]), test)
    res = simulate(pol, test)
    assert res.mean_completion_tokens <= 0.45 * full.mean_completion_tokens
    assert res.accuracy >= full.accuracy - 0.02
    rows = simulate_per_problem(pol, test)
    # Hopeless prompts (kind 1) stop after one sample; contested ones keep sampling.
    assert max(r.mean_calls for r in rows[1::3]) == 1.0
    assert min(r.mean_calls for r in rows[2::3]) > 2.0
    path = tmp_path / "value.json"
    pol.save(path)
    again = load_policy(path)
    assert isinstance(again, ValuePolicy)
    assert simulate(again, test).accuracy == res.accuracy
    assert simulate(again, test).mean_completion_tokens == res.mean_completion_tokens


async def test_adaptive_answers_with_the_weighted_vote() -> None:
    # Two samples echo a number of the prompt, one does not: plain majority says 7, the weighted vote 12.
    rel = ReliabilityModel([], {"echo": 0.1, "L0": 1.0})
    pol = ValuePolicy(3, [1, 2, 3], 0.0, {}, {}, reliability=rel)  # no cells: never stops before max_n
    gen = ScriptedGenerator({"sample": ["\\boxed{7}", "\\boxed{7}", "\\boxed{12}"]})
    msgs = [{"role": "user", "content": "Ann has 5 and 7 marbles. How many?"}]
    res = await run_strategy(msgs, TTCSpec(strategy="adaptive"), generator=gen, budget=InMemoryBudget(),
                             params={"max_tokens": 20}, policy=pol)
    assert len(res.calls) == 3 and [c.n for c in gen.calls] == [1, 1, 1]
    assert res.answer == "12" and res.meta["votes"] == {"7": 2, "12": 1}
    gen = ScriptedGenerator({"sample": ["\\boxed{7}", "\\boxed{7}", "\\boxed{12}"]})
    plain = await run_strategy(msgs, TTCSpec(strategy="best_of_n", n=3), generator=gen, budget=InMemoryBudget(),
                               params={"max_tokens": 20})
    assert plain.answer == "7"  # majority itself is unchanged


async def test_adaptive_through_replay_does_exactly_what_the_fitter_models() -> None:
    """The gateway code path (adaptive over a Generator) and the fitter's model of it
    (tally with weights, then should_stop, sample by sample) agree draw for draw."""
    raw = synthetic(2)[:30]
    rng = random.Random(3)
    replay = [
        ReplayProblem(id=str(i), prompt=p.prompt, samples=[
            # Texts with and without a step to check, so that the arithmetic-check categories are served too.
            ReplaySample(text=rng.choice([f"The answer is {a}.", f"1 + 1 = {a}. The answer is {a}."]), answer=a,
                         correct=c, prompt_tokens=5, completion_tokens=rng.choice([12, 20, 40]))
            for a, c in zip(p.answers, p.correct)])
        for i, p in enumerate(raw)
    ]
    pol = fit_value_policy([to_policy_problem(p) for p in replay], max_n=12, token_budget=0.4, perms=8, knn_k=3)
    for p in replay:
        pp = to_policy_problem(p)
        served = pol.for_prompt(p.prompt)
        weights = served.vote_weights(pp.answers, pp.completion_tokens, p.prompt, pp.texts)
        assert weights is not None
        for seed in range(3):
            gen = ReplayGenerator([p], seed=seed)
            res = await run_strategy([{"role": "user", "content": p.prompt}], TTCSpec(strategy="adaptive"),
                                     generator=gen, budget=InMemoryBudget(), policy=pol)
            order = list(range(len(p.samples)))
            random.Random(f"{seed}:{p.id}").shuffle(order)
            for k in served.schedule:
                part = order[:k]
                t = tally([pp.answers[j] for j in part], None, [weights[j] for j in part])
                if served.should_stop(t, 12):
                    break
            assert len(res.calls) == k
            assert res.answer == t.leader
            assert res.usage.completion_tokens == sum(pp.completion_tokens[j] for j in part)
