"""Graders: score a model's answer against a reference, in [0, 1].

The answer readers are :mod:`contracts.answers`, the ones the strategies vote by, so a label
the router trains on and a vote a strategy counts read the same answer.

* ``numeric``: GSM8K style. Each side's number is the one it ends on
  (:func:`contracts.answers.extract_final_number`: `\\boxed{}`, else the last
  "answer is N" / `#### N`, else the last number). Equal within 1e-6 relative tolerance.
* ``choice``: multiple-choice letter A-J (:func:`contracts.answers.extract_choice`);
  a reference with no readable letter is taken as its first character.
* ``exact``: case- and whitespace-insensitive equality.
* ``contains``: the normalized reference occurs in the normalized answer.
* ``module:function``: any Python callable `(answer: str, reference: str) -> float | bool`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from contracts.answers import extract_choice, extract_final_number, number_value

Grader = Callable[[str, str], float]


def _final_value(text: str) -> float | None:
    number = extract_final_number(text)
    return None if number is None else number_value(number)


def numeric(answer: str, reference: str) -> float:
    got, want = _final_value(answer), _final_value(reference)
    if got is None or want is None:
        return 0.0
    return float(abs(got - want) <= 1e-6 * max(1.0, abs(want)))


def choice(answer: str, reference: str) -> float:
    want = extract_choice(reference) or reference.strip().upper()[:1]
    return float(extract_choice(answer) == want)


# Grading text keeps punctuation and articles ("C++" is not "C"): stricter than the strategies'
# normalize_text, which only has to cluster votes.
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
