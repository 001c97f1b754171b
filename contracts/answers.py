"""Reading the final answer out of a model's text: the one definition both sides grade by.

The router's lab grades collected answers with it (router/lab/graders.py: its training labels)
and the strategies vote and stop on it (strategies/extractors.py). Two copies drifted apart and
read different letters from the same answer, so a prompt the router learned was "answered
right" could be one a strategy's vote counted wrong; hence one copy, here.

Each reader maps text to a canonical string, or None when it finds no answer: two answers agree
iff their canonical strings are equal (`0.50` == `1/2` for numbers, `(b)` == `B` for choices).
"""

from __future__ import annotations

import re
from fractions import Fraction

# ------------------------------------------------------------------- boxed


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} / \\fbox{...}, with nested braces."""
    idx = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if idx < 0:
        return None
    start = text.find("{", idx)
    if start < 0:
        return None
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
    return None


def normalize_math(ans: str) -> str:
    """Canonical form of a LaTeX-ish math answer.

    Strips wrappers that do not change the value (`$`, `\\text{}`, `\\left`,
    units like `^\\circ`, thousands separators), unifies `\\dfrac`/`\\tfrac`
    and turns plain numbers and simple fractions into one numeric form.
    """
    s = ans.strip()
    s = s.strip("$ ").rstrip(".").strip("$ ")
    s = re.sub(r"\\text\{\s*([^{}]*)\}", r"\1", s)
    s = re.sub(r"\\(?:mathrm|textbf|mathbf)\{([^{}]*)\}", r"\1", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("\\left", "").replace("\\right", "").replace("\\!", "").replace("\\,", "")
    s = s.replace("^\\circ", "").replace("^{\\circ}", "").replace("\\%", "").replace("%", "")
    s = re.sub(r"\{,\}", "", s)  # 10{,}000
    s = re.sub(r"^[a-zA-Z]\s*=\s*", "", s)  # x = 5
    s = s.replace(" ", "")
    num = as_number(s)
    if num is not None:
        return num
    m = re.fullmatch(r"\\frac\{(-?\d+)\}\{(-?\d+)\}", s) or re.fullmatch(r"\\frac(\d)(\d)", s)
    if m and int(m.group(2)) != 0:
        return _fmt_fraction(Fraction(int(m.group(1)), int(m.group(2))))
    m = re.fullmatch(r"-\\frac\{(\d+)\}\{(\d+)\}", s)
    if m and int(m.group(2)) != 0:
        return _fmt_fraction(-Fraction(int(m.group(1)), int(m.group(2))))
    return s


def as_number(s: str) -> str | None:
    """The canonical form of a plain number or `p/q` fraction; None for anything else."""
    t = s.replace(",", "") if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s) else s
    t = t.lstrip("\\$")
    if re.fullmatch(r"-?\d+(\.\d+)?", t) or re.fullmatch(r"-?\.\d+", t):
        return _fmt_fraction(Fraction(t))
    m = re.fullmatch(r"(-?\d+)/(\d+)", t)
    if m and int(m.group(2)) != 0:
        return _fmt_fraction(Fraction(int(m.group(1)), int(m.group(2))))
    return None


def _fmt_fraction(f: Fraction) -> str:
    """Exact canonical form: an integer, a terminating decimal, else p/q."""
    if f.denominator == 1:
        return str(f.numerator)
    d = f.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    if d == 1:
        digits = 0
        while (f * 10**digits).denominator != 1:
            digits += 1
        return f"{float(f):.{digits}f}"
    return f"{f.numerator}/{f.denominator}"


def extract_boxed(text: str) -> str | None:
    inner = last_boxed(text)
    return None if inner is None else normalize_math(inner)


# ------------------------------------------------------------------ numbers

_NUM = r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?(?:/\d+)?|-?\.\d+"
_NUMBER = re.compile(_NUM)
# "The answer is 12", "Answer: $12", "#### 12": the number right after the statement.
_STATED_NUMBER = re.compile(rf"(?i:answer\s*(?:is|:|=)|####)\s*\**\s*\$?\s*({_NUM})")


def extract_number(text: str) -> str | None:
    """The last number in the text (GSM8K `#### 42` style answers included)."""
    m = re.search(r"####\s*(.+)", text)
    scope = m.group(1) if m else text
    nums = _NUMBER.findall(scope)
    if not nums:
        return None
    return as_number(nums[-1]) or nums[-1]


def extract_final_number(text: str) -> str | None:
    """The number a word-problem answer ends on.

    Prefers `\\boxed{}`, then the last explicit statement ("The answer is 12",
    "Answer: 12", "#### 12"), then the last number. Small models often keep
    talking after stating the answer ("... is 12. Note that 3 people ..."), so
    the plain last number would read the chatter instead.
    """
    boxed = extract_boxed(text)
    if boxed is not None and as_number(boxed) is not None:
        return boxed
    stated = _STATED_NUMBER.findall(text)
    if stated:
        return as_number(stated[-1]) or stated[-1]
    return extract_number(text)


def number_value(canonical: str) -> float | None:
    """The float a canonical number (`12`, `0.5`, `1/3`, or a raw `1,23`) stands for."""
    try:
        return float(Fraction(canonical.replace(",", "")))
    except (ValueError, ZeroDivisionError):
        return None


# ----------------------------------------------------------- multiple choice

# A choice is a letter A-J (MMLU has A-D, MMLU-Pro A-J), written one of three ways:
# * wrapped, "(C)", "[c]", "**C**", "**(c).**": the wrapping makes either case a choice;
# * bare and upper-case, "C", "C)", "C.": a bare lower-case letter is usually a word ("the
#   answer is a bit ..."). A bare "I" followed by a word or an apostrophe is the pronoun
#   ("Answer: I think ..."), unless the word explains ("I because ...");
# * bare and lower-case only where it ends the statement ("answer: c").
_LETTER = (
    r"(?:\*\*|__)?[(\[]\s*([A-Ja-j])\s*[)\]][.:]?(?:\*\*|__)?"
    r"|(?:\*\*|__)([A-Ja-j])[.):]?(?:\*\*|__)"
    r"|([A-HJ]|I(?!['’]|\s+(?!because\b|since\b|as\b)[a-z]))(?![A-Za-z0-9'’])[.):]?"
    r"|([a-j])[.)]?(?=[ \t]*$)"
)
_STATEMENT = r"\b(?i:answer|choice|correct|choose|pick|(?:correct|right|best)\s+(?:option|one))\b"
_VERB = r"(?:\s*(?i:is|was|would\s+be|should\s+be)\b)?"
# Tried in order; within one, the last match wins (a model may revise: "... no, the answer is B").
_CHOICE_PATTERNS: tuple[re.Pattern[str], ...] = (
    # An explicit statement: "The answer is (B)", "Answer: **C**", "The choice is E", "correct is (C)",
    # "I'd pick B", "the answer is option C", "the correct option is B".
    re.compile(rf"{_STATEMENT}{_VERB}\s*[:=\-]?\s*(?:(?i:option)\s+)?(?:{_LETTER})", re.M),
    # A verdict on one letter: "Option B is correct", "(C) is the right answer".
    re.compile(rf"(?:\b(?i:option)\s+)?(?<![A-Za-z])(?:{_LETTER})\s+is\s+(?i:the\s+)?(?i:correct|right)\b", re.M),
    # A boxed letter: "\boxed{B}", "\boxed{(C)}", "\boxed{\text{D}}".
    re.compile(r"\\boxed\{\s*(?:\\(?:text|textbf|mathrm|mathbf)\{\s*\(?([A-J])\)?\s*\}|\(?([A-J])\)?)\s*\}"),
    # A letter alone on its line: a bare reply ("B"), or a last line after the reasoning ("(d)").
    re.compile(rf"^[ \t]*(?:{_LETTER})[ \t]*$", re.M),
    # A parenthesized letter that ends the text: "... so I'd say (C)".
    re.compile(r"\(([A-J])\)[\s.*]*\Z"),
    # The weakest: any "option D" ("I pick option D"); explanations walk through every option,
    # so this is read only when nothing above matched.
    re.compile(rf"\b(?i:option)\s*[:\-]?\s*(?:{_LETTER})", re.M),
)


def extract_choice(text: str) -> str | None:
    """A multiple-choice letter A-J, upper-case, from the most explicit way the text states one."""
    for pattern in _CHOICE_PATTERNS:
        found = [next(g for g in m.groups() if g) for m in pattern.finditer(text)]
        if found:
            return found[-1].upper()
    return None
