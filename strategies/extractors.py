"""Final-answer extractors for majority voting.

An extractor maps a completion's text to a canonical answer string, or None
when it finds no answer. Two answers vote together iff their canonical strings
are equal, so each extractor normalizes aggressively within its own domain
(`0.50` == `1/2` for numbers, `(b)` == `B` for choices). Register new ones with
:func:`register_extractor`; the `auto` extractor tries `\\boxed{}`, then an
explicit multiple-choice answer, then the last number, then normalized text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from fractions import Fraction

Extractor = Callable[[str], str | None]

_REGISTRY: dict[str, Extractor] = {}


def register_extractor(name: str, fn: Extractor) -> None:
    _REGISTRY[name] = fn


def get_extractor(name: str) -> Extractor:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown extractor {name!r}; known: {sorted(_REGISTRY)}") from None


def extractor_names() -> list[str]:
    return sorted(_REGISTRY)


# ------------------------------------------------------------------- boxed


def _last_boxed(text: str) -> str | None:
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
    num = _as_number(s)
    if num is not None:
        return num
    m = re.fullmatch(r"\\frac\{(-?\d+)\}\{(-?\d+)\}", s) or re.fullmatch(r"\\frac(\d)(\d)", s)
    if m and int(m.group(2)) != 0:
        return _fmt_fraction(Fraction(int(m.group(1)), int(m.group(2))))
    m = re.fullmatch(r"-\\frac\{(\d+)\}\{(\d+)\}", s)
    if m and int(m.group(2)) != 0:
        return _fmt_fraction(-Fraction(int(m.group(1)), int(m.group(2))))
    return s


def _as_number(s: str) -> str | None:
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
    inner = _last_boxed(text)
    return None if inner is None else normalize_math(inner)


# ------------------------------------------------------------------ numbers

_NUM = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?(?:/\d+)?|-?\.\d+")


def extract_number(text: str) -> str | None:
    """The last number in the text (GSM8K `#### 42` style answers included)."""
    m = re.search(r"####\s*(.+)", text)
    scope = m.group(1) if m else text
    nums = _NUM.findall(scope)
    if not nums:
        return None
    return _as_number(nums[-1]) or nums[-1]


# ----------------------------------------------------------- multiple choice

_CHOICE_PATTERNS = [
    # Keyword case-insensitive, letter upper-case: "the answer is a bit..." is no choice.
    re.compile(r"(?i:answer|option|choice)\s*(?:is|:)?\s*[:\-]?\s*\(?\*{0,2}([A-J])\b\)?"),
    re.compile(r"^\s*\(?([A-J])[\).:]?\s*$", re.M),
    re.compile(r"\\boxed\{\s*\(?([A-J])\)?\s*\}"),
]


def extract_choice(text: str) -> str | None:
    """A multiple-choice letter A-J from an explicit answer statement."""
    for pat in _CHOICE_PATTERNS:
        found = pat.findall(text)
        if found:
            return found[-1].upper()
    return None


# --------------------------------------------------------------------- text


def normalize_text(text: str) -> str | None:
    """Case-, punctuation- and whitespace-insensitive text (short answers)."""
    s = unicodedata.normalize("NFKC", text).lower()
    s = re.sub(r"\b(the|a|an)\b", " ", s)
    s = re.sub(r"[^\w\s]", " ", s)
    s = " ".join(s.split())
    return s or None


def extract_final_number(text: str) -> str | None:
    """The number a word-problem answer ends on.

    Prefers `\\boxed{}`, then the last explicit statement ("The answer is 12",
    "Answer: 12", "#### 12"), then the last number. Small models often keep
    talking after stating the answer ("... is 12. Note that 3 people ..."), so
    the plain last number would read the chatter instead.
    """
    boxed = extract_boxed(text)
    if boxed is not None and _as_number(boxed) is not None:
        return boxed
    stated = re.findall(r"(?i:answer\s*(?:is|:|=)|####)\s*\**\s*\$?\s*"
                        r"(-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?(?:/\d+)?|-?\.\d+)", text)
    if stated:
        return _as_number(stated[-1]) or stated[-1]
    return extract_number(text)


def extract_auto(text: str) -> str | None:
    for fn in (extract_boxed, extract_choice, extract_number, normalize_text):
        ans = fn(text)
        if ans is not None:
            return ans
    return None


register_extractor("boxed", extract_boxed)
register_extractor("number", extract_number)
register_extractor("final_number", extract_final_number)
register_extractor("choice", extract_choice)
register_extractor("text", normalize_text)
register_extractor("auto", extract_auto)
