"""Cheap hand-made prompt features that carry difficulty signal.

Embeddings capture topic well but difficulty poorly ("Look Before You Leap":
surface statistics of a task predict how hard it is). These are computed in
microseconds with regexes, so they cost nothing at routing time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

_NUM = re.compile(r"(?<![A-Za-z])[-+]?\$?\d[\d,]*(?:\.\d+)?%?")
_WORD = re.compile(r"\w+")
_SENT = re.compile(r"[.!?](?:\s|$)")
_OPTION = re.compile(r"(?m)^\s*\(?[A-Ja-j][.)]\s")
_CODE = re.compile(r"(def |return |class |import |\{|\}|==|;\s*$|```)", re.M)
_MATH = re.compile(r"[=+*/^<>]|\\frac|\\sqrt|\$")
_FRACTION = re.compile(r"\d+\s*/\s*\d+")

FEATURE_NAMES: tuple[str, ...] = (
    "log_chars",
    "log_words",
    "log_sentences",
    "log_lines",
    "n_numbers",
    "log_numbers",
    "max_number_digits",
    "has_decimal",
    "has_percent",
    "has_money",
    "n_fractions",
    "n_options",
    "code_density",
    "math_density",
    "question_marks",
    "mean_word_len",
    "uppercase_ratio",
    "non_ascii_ratio",
)


def _features(text: str) -> list[float]:
    words = _WORD.findall(text)
    nums = _NUM.findall(text)
    n_chars = max(len(text), 1)
    digits = [len(re.sub(r"\D", "", n)) for n in nums]
    return [
        math.log1p(len(text)),
        math.log1p(len(words)),
        math.log1p(len(_SENT.findall(text))),
        math.log1p(text.count("\n")),
        min(len(nums), 30) / 10.0,
        math.log1p(len(nums)),
        min(max(digits, default=0), 12) / 4.0,
        float(any("." in n for n in nums)),
        float("%" in text or "percent" in text.lower()),
        float("$" in text),
        min(len(_FRACTION.findall(text)), 10) / 3.0,
        min(len(_OPTION.findall(text)), 10) / 4.0,
        len(_CODE.findall(text)) * 100.0 / n_chars,
        len(_MATH.findall(text)) * 100.0 / n_chars,
        min(text.count("?"), 10) / 2.0,
        (sum(len(w) for w in words) / len(words)) / 5.0 if words else 0.0,
        sum(c.isupper() for c in text) / n_chars * 10.0,
        sum(ord(c) > 127 for c in text) / n_chars * 10.0,
    ]


class TextFeatures:
    """Featurizer: `FEATURE_NAMES`, one row per prompt (float32)."""

    kind = "text-stats"
    dim = len(FEATURE_NAMES)

    def transform(self, prompts: Sequence[str], progress: bool = False) -> np.ndarray:
        return np.array([_features(p) for p in prompts], dtype=np.float32).reshape(len(prompts), self.dim)

    def spec(self) -> dict[str, object]:
        return {"kind": self.kind, "features": list(FEATURE_NAMES)}
