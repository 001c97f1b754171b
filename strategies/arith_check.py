"""Does a sample's worked arithmetic hold together? A verifier that needs no answer key.

A weak model's wrong answers to word problems are mostly not miscalculations:
it multiplies instead of adding, or computes with numbers the problem never
stated ("7 * 3 = 21" for a problem about 7 and 7 caps). Both are visible in
the sample's own text. :func:`check_arithmetic` reads every `expression =
number` step of a sample and returns

* ``"ok"``: every step is arithmetically right, every operand is a number the
  prompt states or an earlier step's result, and the final answer equals the
  last step's result;
* ``"bad"``: there are steps, and one of those conditions fails;
* ``"none"``: the sample shows no step to check.

It reads only the prompt, the sample's text and its extracted answer, all of
which the live gateway has for every sample. On the three SmolLM2-135M
recordings of MAWPS single-op problems (tests/fixtures/smollm2_mawps_singleop_16*.jsonl),
"ok" samples are right 63-66% of the time and "bad" ones 4-5%, a far sharper
signal than length.
"""

from __future__ import annotations

import re
from typing import Literal

Check = Literal["ok", "bad", "none"]

_NUM = r"\d+(?:\.\d+)?"
_OPS = "+-*/x×÷"
# An expression of numbers and binary operators, then "= number". Words between
# steps break a chain, so "3 apples + 4 = 7" is not read as a step.
_STEP = re.compile(rf"(?<![\w.])((?:{_NUM}\s*[{re.escape(_OPS)}]\s*)+{_NUM})\s*=\s*(-?{_NUM})(?![\w])")
_TOKEN = re.compile(rf"{_NUM}|[{re.escape(_OPS)}]")
_NUMBERS = re.compile(rf"-?{_NUM}")


def _clean(text: str) -> str:
    # "$1,200" -> "1200": thousands separators and currency are not part of the arithmetic.
    return re.sub(r"(?<=\d),(?=\d{3}\b)", "", text).replace("$", "")


def stated_numbers(text: str) -> set[float]:
    return {float(x) for x in _NUMBERS.findall(_clean(text))}


def _evaluate(expr: str) -> tuple[float | None, list[float]]:
    """Value of `expr` with * and / before + and -, and its operands. None: division by zero."""
    tokens = _TOKEN.findall(expr)
    operands = [float(t) for t in tokens[::2]]
    ops = ["*" if o in "x×" else "/" if o == "÷" else o for o in tokens[1::2]]
    terms: list[float] = [operands[0]]
    signs: list[str] = []
    for op, value in zip(ops, operands[1:]):
        if op in "*/":
            if op == "/" and value == 0:
                return None, operands
            terms[-1] = terms[-1] * value if op == "*" else terms[-1] / value
        else:
            signs.append(op)
            terms.append(value)
    total = terms[0]
    for sign, term in zip(signs, terms[1:]):
        total = total + term if sign == "+" else total - term
    return total, operands


def _close(a: float, b: float) -> bool:
    # Models round money and ratios to 2 decimals.
    return abs(a - b) <= max(0.01, 1e-6 * abs(b))


def as_number(answer: str | None) -> float | None:
    if answer is None:
        return None
    try:
        return float(_clean(answer))
    except ValueError:
        return None


def check_arithmetic(prompt: str, text: str, answer: str | None) -> Check:
    steps = _STEP.findall(_clean(text))
    if not steps:
        return "none"
    known = stated_numbers(prompt)
    result = 0.0
    for expr, stated in steps:
        value, operands = _evaluate(expr)
        result = float(stated)
        if value is None or not _close(value, result) or any(x not in known for x in operands):
            return "bad"
        known.add(result)
    final = as_number(answer)
    return "ok" if final is not None and _close(final, result) else "bad"
