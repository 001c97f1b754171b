"""Loading a router caps numpy's BLAS pool, so tiny per-decision products don't pay for thread hand-offs."""

from __future__ import annotations

from pathlib import Path

import numpy  # noqa: F401  (loads the BLAS library that threadpoolctl inspects)
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import gateway
from gateway.state import load_router

BUILT_IN_ARTIFACT = Path(gateway.__file__).parent / "assets" / "router-local"


def blas_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_loading_a_router_limits_blas_to_the_router_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTC_ROUTER_THREADS", "1")
    before = threadpool_limits(limits=2, user_api="blas")  # as numpy starts on a 2-core machine
    try:
        assert blas_threads() == {2}
        assert load_router(str(BUILT_IN_ARTIFACT)) is not None
        assert blas_threads() == {1}
    finally:
        before.restore_original_limits()
