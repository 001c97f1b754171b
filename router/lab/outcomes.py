"""The router lab's view of outcome rows: the row and its file format live in
:mod:`contracts.outcomes` (the strategies' lab reads the same files); what only the router needs
(prompt identity for dedup and leakage checks, the provenance hash) lives here.

The contract's names are re-exported so that `from router.lab.outcomes import read_outcomes`
keeps working for scripts outside the package (bench/).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from contracts.outcomes import OutcomeFileError, OutcomeRow, iter_outcomes, read_outcomes, write_outcomes

__all__ = ["OutcomeFileError", "OutcomeRow", "iter_outcomes", "outcomes_sha256", "prompt_key", "read_outcomes",
           "write_outcomes"]


def outcomes_sha256(rows: Iterable[OutcomeRow]) -> str:
    """Order-independent content hash, recorded in artifacts for provenance."""
    digests = sorted(
        hashlib.sha256(json.dumps(r.model_dump(), sort_keys=True).encode()).hexdigest() for r in rows
    )
    return hashlib.sha256("".join(digests).encode()).hexdigest()


def prompt_key(prompt: str) -> str:
    """Identity of a prompt for dedup and leakage checks.

    Whitespace is normalised because public dumps differ in trailing newlines;
    anything else (case, punctuation) is kept, since it can change the answer.
    """
    return hashlib.sha256(" ".join(prompt.split()).encode("utf-8")).hexdigest()
