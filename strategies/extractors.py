"""Final-answer extractors for majority voting.

An extractor maps a completion's text to a canonical answer string, or None
when it finds no answer. Two answers vote together iff their canonical strings
are equal, so each extractor normalizes aggressively within its own domain.
The readers themselves (boxed, numbers, choices) live in :mod:`contracts.answers`,
shared with the router's graders so that a vote and a training label read the
same answer; this module names them for `TTCSpec.extractor` and adds what only
voting needs: normalized free text and `auto`. Register new ones with
:func:`register_extractor`; the `auto` extractor tries `\\boxed{}`, then an
explicit multiple-choice answer, then the last number, then normalized text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from contracts.answers import extract_boxed, extract_choice, extract_final_number, extract_number

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


def normalize_text(text: str) -> str | None:
    """Case-, punctuation- and whitespace-insensitive text (short answers)."""
    s = unicodedata.normalize("NFKC", text).lower()
    s = re.sub(r"\b(the|a|an)\b", " ", s)
    s = re.sub(r"[^\w\s]", " ", s)
    s = " ".join(s.split())
    return s or None


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
