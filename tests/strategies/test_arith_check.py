"""The worked-arithmetic check behind adaptive's vote weights."""

from __future__ import annotations

import pytest

from strategies.arith_check import check_arithmetic
from strategies.lab.fit_value_policy import fit_reliability
from strategies.reliability import ReliabilityModel, prompt_numbers

PROMPT = "Tom has 3 apples and buys 4 bags of 2 apples each. How many apples does he have?"


@pytest.mark.parametrize(
    ("text", "answer", "expected"),
    [
        # A chain: the second step uses the first step's result.
        ("4 * 2 = 8. 3 + 8 = 11. The answer is 11.", "11", "ok"),
        ("4 x 2 = 8, then 8 + 3 = 11.", "11", "ok"),
        # Precedence: 3 + 4 * 2 is 11, not 14.
        ("3 + 4 * 2 = 11. The answer is 11.", "11", "ok"),
        ("3 + 4 * 2 = 14. The answer is 14.", "14", "bad"),
        # Right arithmetic on a number the prompt never states.
        ("7 * 3 = 21. The answer is 21.", "21", "bad"),
        # Miscalculated.
        ("4 * 2 = 9. The answer is 9.", "9", "bad"),
        # The final answer is not what the steps computed.
        ("4 * 2 = 8. 3 + 8 = 11. The answer is 8.", "8", "bad"),
        ("4 * 2 = 8.", None, "bad"),
        # Nothing to check.
        ("The answer is 11.", "11", "none"),
        ("", None, "none"),
        ("4 / 0 = 0", "0", "bad"),
    ],
)
def test_check_arithmetic(text: str, answer: str | None, expected: str) -> None:
    assert check_arithmetic(PROMPT, text, answer) == expected


def test_money_separators_and_rounding() -> None:
    prompt = "A bike costs $1,200 and a helmet $35.50. Split the total over 3 months."
    assert check_arithmetic(prompt, "$1,200 + $35.50 = $1,235.50. 1235.50 / 3 = 411.83", "411.83") == "ok"
    assert check_arithmetic(prompt, "1200 + 35.50 = 1235.50. 1235.50 / 3 = 415", "415") == "bad"


def test_words_between_numbers_are_not_a_step() -> None:
    # "2 apples + 4 = 6" is not an expression this check can read: no step, no verdict.
    assert check_arithmetic("He has 2 apples and 4 pears.", "2 apples + 4 = 6", "6") == "none"


def test_weights_use_the_check_only_when_fitted_with_it() -> None:
    prompt = "Ann has 5 pens and gets 3 more."
    texts = ["5 + 3 = 8. The answer is 8.", "5 * 2 = 10. The answer is 10.", "The answer is 8."] * 30
    answers = ["8", "10", "8"] * 30
    correct = [True, False, True] * 30
    tokens = [12, 12, 12] * 30
    rows = [(a, t, prompt_numbers(prompt), c) for a, t, c in zip(answers, tokens, correct)]
    checks = [check_arithmetic(prompt, x, a) for x, a in zip(texts, answers)]
    with_checks = fit_reliability(rows, bins=2, checks=checks)
    plain = fit_reliability(rows, bins=2)
    w = with_checks.weights_for(answers[:3], tokens[:3], prompt, texts[:3])
    assert w[1] < 0.3 * w[0]  # the ungrounded sample barely counts
    # Same lengths, no echo: without the check every sample is in one category.
    assert len(set(plain.weights_for(answers[:3], tokens[:3], prompt, texts[:3]))) == 1
    # Without texts the checked model falls back to its other categories.
    assert len(set(with_checks.weights_for(answers[:3], tokens[:3], prompt))) == 1
    restored = ReliabilityModel.from_json(with_checks.to_json())
    assert restored.weights_for(answers[:3], tokens[:3], prompt, texts[:3]) == pytest.approx(w, abs=1e-6)
