import random
from pathlib import Path

import pytest

from strategies.lab.fit_policy import fit_policy
from strategies.lab.simulate import Problem, simulate
from strategies.policy import ConsistencyPolicy, _beta_tail_above_half, checkpoints, load_policy


def test_checkpoints() -> None:
    assert checkpoints(2, 1, 5) == [2, 3, 4, 5]
    assert checkpoints(2, 3, 8) == [2, 5, 8]
    assert checkpoints(4, 2, 3) == [3]


def test_beta_tail() -> None:
    assert _beta_tail_above_half(1, 1) == pytest.approx(0.5)
    assert _beta_tail_above_half(3, 1) == pytest.approx(0.875)
    assert _beta_tail_above_half(4, 1) == pytest.approx(0.9375)


def synthetic(seed: int = 0) -> list[Problem]:
    """Easy problems: 8 identical correct answers. Hard: a slim correct plurality among noise."""
    rng = random.Random(seed)
    out = []
    for i in range(60):
        if i % 3:
            answers: list[str | None] = ["a"] * 8
            correct = [True] * 8
        else:
            answers = ["a", "a", "a", "b", "b", "c", "d", "e"]
            rng.shuffle(answers)
            correct = [x == "a" for x in answers]
        out.append(Problem(answers, [None] * 8, correct, [100] * 8))
    return out


@pytest.mark.parametrize("objective", ["agreement", "gain"])
def test_fitted_policy_saves_tokens_on_easy_and_keeps_accuracy(objective: str, tmp_path: Path) -> None:
    train, test = synthetic(0), synthetic(1)
    pol = fit_policy(train, max_n=8, objective=objective, perms=5)
    full = simulate(ConsistencyPolicy(8, [8]), test)
    res = simulate(pol, test)
    assert res.mean_completion_tokens < 0.6 * full.mean_completion_tokens
    assert res.accuracy >= full.accuracy - 0.02
    path = tmp_path / "p.json"
    pol.save(path)
    again = load_policy(path)
    assert again.threshold == pol.threshold and again.schedule == pol.schedule
    assert simulate(again, test).accuracy == pytest.approx(res.accuracy)


def graded(seed: int = 0) -> list[Problem]:
    """Half the prompts are 'hard' (difficulty 0.05): scattered wrong answers, no gain from voting.
    The other half are contested: the right answer is a slim plurality that voting recovers."""
    rng = random.Random(seed)
    out = []
    for i in range(80):
        if i % 2:
            answers: list[str | None] = [f"w{rng.randrange(6)}" for _ in range(16)]
            correct = [False] * 16
            diff = 0.05
        else:
            answers = ["a"] * 7 + [f"w{rng.randrange(5)}" for _ in range(9)]
            rng.shuffle(answers)
            correct = [x == "a" for x in answers]
            diff = 0.45
        out.append(Problem(answers, [None] * 16, correct, [30] * 16, difficulty=diff))
    return out


def test_difficulty_bins_let_the_policy_stop_early_on_hopeless_prompts() -> None:
    train, test = graded(0), graded(1)
    plain = fit_policy(train, max_n=16, objective="gain", rel_tolerance=0.02, perms=5)
    split = fit_policy(train, max_n=16, objective="gain", rel_tolerance=0.02, perms=5, difficulty_bins=2)
    assert split.difficulty_edges and not plain.difficulty_edges
    full = simulate(ConsistencyPolicy(16, [16]), test)
    res_plain, res_split = simulate(plain, test), simulate(split, test)
    assert res_split.accuracy >= 0.98 * full.accuracy
    assert res_split.mean_completion_tokens < res_plain.mean_completion_tokens
    hard = [p for p in test if p.difficulty == 0.05]
    assert simulate(split, hard).mean_calls < 3  # hopeless prompts give up after a few samples


def test_policy_state_and_difficulty_survive_save_and_load(tmp_path: Path) -> None:
    pol = fit_policy(graded(0), max_n=16, objective="agreement", state="vote+distinct", difficulty_bins=2, perms=2,
                     rel_tolerance=0.01)
    path = tmp_path / "p.json"
    pol.save(path)
    again = load_policy(path)
    assert (again.state, again.difficulty_edges, again.threshold) == (pol.state, pol.difficulty_edges, pol.threshold)
    p = graded(3)[0]
    assert simulate(again, [p], perms=3).accuracy == pytest.approx(simulate(pol, [p], perms=3).accuracy)
    with pytest.raises(ValueError):
        fit_policy(graded(0), max_n=16, state="nonsense")


def test_select_policy_picks_a_family_by_inner_cv() -> None:
    from strategies.lab.fit_policy import select_policy

    cands = [{"objective": "agreement", "difficulty_bins": 0}, {"objective": "gain", "difficulty_bins": 2}]
    pol = select_policy(graded(0), max_n=16, candidates=cands, rel_tolerance=0.02, perms=3)
    assert pol.meta["selected"]["objective"] in ("agreement", "gain")
    # Only the difficulty-split family can give up on the hopeless half cheaply.
    assert pol.meta["selected"] == {"objective": "gain", "difficulty_bins": 2, "threshold": pol.threshold}


def test_prompt_difficulty_model_ranks_by_number_size() -> None:
    from strategies.lab.difficulty import fit_difficulty

    prompts = [f"Tom has {a} apples and gets {b} more. How many?" for a in range(2, 9) for b in (3, 55, 80)]
    success = [0.4 if b == 3 else 0.0 for a in range(2, 9) for b in (3, 55, 80)]
    model = fit_difficulty(prompts, success)
    easy, hard = model.predict("Ann has 4 pens and gets 2 more. How many?"), model.predict("Ann has 4 pens and gets 77 more.")
    assert 0.2 < easy < 0.6 and hard < 0.1
