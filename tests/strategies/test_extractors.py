import pytest

from contracts.answers import extract_boxed, extract_choice, extract_number, normalize_math
from strategies.extractors import extract_auto, get_extractor, normalize_text, register_extractor


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so the answer is \\boxed{42}.", "42"),
        ("first \\boxed{1} then \\boxed{\\frac{3}{8}}", "0.375"),
        ("\\boxed{\\frac{1}{3}}", "1/3"),
        ("\\boxed{\\dfrac{1}{2}}", "0.5"),
        ("\\boxed{0.5}", "0.5"),
        ("\\boxed{1/2}", "0.5"),
        ("\\boxed{10{,}000}", "10000"),
        ("\\boxed{50,625}", "50625"),
        ("\\boxed{x = 5}", "5"),
        ("\\boxed{\\sqrt{34}+3\\sqrt{10}}", "\\sqrt{34}+3\\sqrt{10}"),
        ("\\boxed{90^\\circ}", "90"),
        ("no box here", None),
    ],
)
def test_boxed(text: str, expected: str | None) -> None:
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She has 3 apples and buys 4 more, so 7.", "7"),
        ("Natalia sold 48/2 = 24 clips\n#### 72", "72"),
        ("The total is 1,234,567 dollars", "1234567"),
        ("It is -3.50", "-3.5"),
        ("nothing numeric", None),
    ],
)
def test_number(text: str, expected: str | None) -> None:
    assert extract_number(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("After checking, the answer is (B).", "B"),
        ("Answer: C", "C"),
        ("Option D is right.\nThe answer is A", "A"),
        ("\\boxed{E}", "E"),
        ("The answer is a bit complicated", None),
        ("(c)\n", "C"),  # wrapped, either case is a choice: `(b)` == `B` (tests/contracts has the rest)
    ],
)
def test_choice(text: str, expected: str | None) -> None:
    assert extract_choice(text) == expected


def test_text_normalization() -> None:
    assert normalize_text("  The Eiffel Tower! ") == normalize_text("eiffel   tower")
    assert normalize_text("Paris") != normalize_text("London")
    assert normalize_text("...") is None


def test_auto_prefers_boxed_then_choice_then_number() -> None:
    assert extract_auto("2 + 2 is \\boxed{4}, not 5") == "4"
    assert extract_auto("the answer is B, since 3 > 2") == "B"
    assert extract_auto("we get 12 then 13") == "13"
    assert extract_auto("Blue whale") == "blue whale"


def test_normalize_math_unifies_equal_values() -> None:
    assert normalize_math("\\frac{6}{8}") == normalize_math("0.75") == "0.75"
    assert normalize_math("\\frac{2}{6}") == normalize_math("1/3") == "1/3"
    assert normalize_math("$12$.") == "12"


def test_registry_is_pluggable() -> None:
    register_extractor("upper", lambda t: t.strip().upper() or None)
    assert get_extractor("upper")(" yes ") == "YES"
    with pytest.raises(KeyError):
        get_extractor("nope")


def test_final_number_prefers_the_stated_answer_over_trailing_chatter() -> None:
    from strategies.extractors import get_extractor

    f = get_extractor("final_number")
    assert f("7 + 4 = 11. The answer is 11. Then 3 more people came.") == "11"
    assert f("Answer: $1,200 in total for 5 days") == "1200"
    assert f("so 3 + 4 = 7") == "7"  # no statement: the last number
    assert f("\\boxed{8} and then 9") == "8"
    assert f("#### 42") == "42"
    assert f("no numbers here") is None
    assert get_extractor("number")("The answer is 11. Then 3 more.") == "3"  # why final_number exists
