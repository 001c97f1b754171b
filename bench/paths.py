"""Where the bench reads and writes, whichever module asks and wherever it was started from."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Commit-ready reports (bench/RESULTS.md holds the hand-written history next to them).
RESULTS = REPO / "bench" / "results"
RESULTS_MD = REPO / "bench" / "RESULTS.md"
# The shared datasets, read in place and never copied into the repository.
DATA = Path(os.environ.get("TTC_SHARED_DATA", REPO.parent / "shared" / "data"))
