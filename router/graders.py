"""Graders: score a model's answer against a reference, in [0, 1].

* ``numeric``: GSM8K style. The reference's number is the text after `####`
  (or its last number); the answer's is after `####`, else inside
  `\\boxed{}`, else its last number. Equal within 1e-6 relative tolerance.
* ``choice``: multiple-choice letter (A-J), from "answer is (B)", "Answer: B",
  `\\boxed{B}`, or a lone letter at the end.
* ``exact``: case- and whitespace-insensitive equality.
* ``contains``: the normalized reference occurs in the normalized answer.
* ``module:function``: any Python callable `(answer: str, reference: str) -> float | bool`.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable

Grader = Callable[[str, str], float]

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_CHOICE_PATTERNS = (
    re.compile(r"answer\s*(?:is|:)?\s*[:\-]?\s*\(?([A-J])\)?(?![A-Za-z])", re.I),
    re.compile(r"\\boxed\{\s*\(?([A-J])\)?\s*\}"),
    re.compile(r"^\s*\(?([A-J])\)?[.)]?\s*$", re.M),
    re.compile(r"\(([A-J])\)\s*$"),
)


def _to_float(text: str) -> float | None:
    try:
        return float(text.replace(",", "").replace("$", ""))
    except ValueError:
        return None


def extract_number(text: str) -> float | None:
    """Number after `####`, else in the last `\\boxed{}`, else the last number in the text."""
    if "####" in text:
        nums = _NUMBER.findall(text.split("####")[-1])
        if nums:
            return _to_float(nums[0])
    boxed = _BOXED.findall(text)
    if boxed:
        nums = _NUMBER.findall(boxed[-1])
        if nums:
            return _to_float(nums[-1])
    nums = _NUMBER.findall(text)
    return _to_float(nums[-1]) if nums else None


def numeric(answer: str, reference: str) -> float:
    got, want = extract_number(answer), extract_number(reference)
    if got is None or want is None:
        return 0.0
    return float(abs(got - want) <= 1e-6 * max(1.0, abs(want)))


def extract_choice(text: str) -> str | None:
    for pattern in _CHOICE_PATTERNS:
        found = pattern.findall(text)
        if found:
            return found[-1].upper()
    return None


def choice(answer: str, reference: str) -> float:
    want = extract_choice(reference) or reference.strip().upper()[:1]
    return float(extract_choice(answer) == want)


def _norm(text: str) -> str:
    return " ".join(text.lower().split()).strip(" .")


def exact(answer: str, reference: str) -> float:
    return float(_norm(answer) == _norm(reference))


def contains(answer: str, reference: str) -> float:
    return float(_norm(reference) in _norm(answer))


BUILTIN: dict[str, Grader] = {"numeric": numeric, "choice": choice, "exact": exact, "contains": contains}


def resolve_grader(name: str) -> Grader:
    """A built-in name, or `module:function` for a user callable."""
    if name in BUILTIN:
        return BUILTIN[name]
    module_name, sep, attr = name.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"unknown grader {name!r}: use one of {sorted(BUILTIN)} or module:function")
    func = getattr(importlib.import_module(module_name), attr, None)
    if not callable(func):
        raise ValueError(f"{name!r} is not a callable")

    def user(answer: str, reference: str) -> float:
        value = float(func(answer, reference))
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"grader {name} returned {value}, outside [0, 1]")
        return value

    return user
