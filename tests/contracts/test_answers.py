"""One answer reader for the router's graders and the strategies' extractors."""

from __future__ import annotations

import pytest

import router.lab.graders as graders
import strategies.extractors as extractors
from contracts import answers
from contracts.answers import extract_choice, extract_final_number

# (text, the letter a reader should see). The first four are where the two old copies
# disagreed (router/lab/graders.py read None, None, None, C; strategies/extractors.py
# C, D, E, None); the rest are other common ways models state, or do not state, a choice.
CHOICES: list[tuple[str, str | None]] = [
    ("Answer: **C**", "C"),
    ("I pick option D", "D"),
    ("The choice is E because", "E"),
    ("B) is wrong; correct is (C)", "C"),
    ("The answer is (B).", "B"),
    ("B", "B"),
    ("**A**", "A"),
    ("Option A is correct", "A"),
    ("(d)", "D"),
    ("the answer is (b)", "B"),
    ("answer: c", "C"),
    ("Final answer: **(A)**", "A"),
    ("So the answer is **B**.", "B"),
    ("The correct answer is: D", "D"),
    ("The correct option is B.", "B"),
    ("The answer is option C. Option A is wrong.", "C"),
    ("Option B is correct; option A is wrong.", "B"),
    ("The answer is B. Option A is wrong.", "B"),
    ("Option D is right.\nThe answer is A", "A"),
    ("C\n\nExplanation: option A is wrong because it ignores friction.", "C"),
    ("Let me think. (A) is too small and (B) too big.\nAnswer: (C)", "C"),
    ("I'd say (C)", "C"),
    ("I choose B.", "B"),
    ("Answer:\nC", "C"),
    ("Answer: C) 42", "C"),
    ("Answer: J", "J"),
    ("The answer is I.", "I"),
    ("The answer is I because the others fail.", "I"),
    ("\\boxed{E}", "E"),
    ("\\boxed{(C)}", "C"),
    ("\\boxed{\\text{C}}", "C"),
    ("The answer is $\\boxed{B}$", "B"),
    # No choice stated: a word, the pronoun, a cell name, an explanation.
    ("The answer is a bit complicated", None),
    ("Answer: I think it's B", None),
    ("Answer: A1 is the cell", None),
    ("Answer: Because of friction, B.", None),
    ("The answers are listed below.", None),
    ("We need 12 apples.", None),
]


@pytest.mark.parametrize(("text", "expected"), CHOICES)
def test_extract_choice(text: str, expected: str | None) -> None:
    assert extract_choice(text) == expected


def test_graders_and_extractors_use_the_one_reader() -> None:
    # The same objects, not copies: a fix here is a fix for both sides.
    assert graders.extract_choice is extractors.extract_choice is answers.extract_choice
    assert graders.extract_final_number is extractors.extract_final_number is answers.extract_final_number
    assert extractors.get_extractor("choice") is answers.extract_choice
    assert extractors.get_extractor("final_number") is answers.extract_final_number
    assert not hasattr(graders, "extract_number")  # the router's float copy is gone


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7 + 4 = 11. The answer is 11. Then 3 more people came.", "11"),
        ("Natalia sold 48/2 = 24 clips\n#### 72", "72"),
        ("#### 18 eggs (9 + 9)", "18"),
        ("Answer: $1,200 in total for 5 days", "1200"),
        ("so \\boxed{\\frac{1}{2}}", "0.5"),
        ("no numbers here", None),
    ],
)
def test_final_number(text: str, expected: str | None) -> None:
    assert extract_final_number(text) == expected


def test_grading_and_voting_agree_on_choices() -> None:
    # A grader's 1.0 is a vote for the reference's letter: the two sides read the same letter.
    for text, letter in CHOICES:
        if letter is not None:
            assert graders.choice(text, letter) == 1.0, text
            assert extractors.get_extractor("choice")(text) == letter, text
