"""Loading a router caps numpy's BLAS pool, so tiny per-decision products don't pay for thread hand-offs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gateway

BUILT_IN_ARTIFACT = Path(gateway.__file__).parent / "assets" / "router-local"

# In a fresh interpreter: libraries loaded by earlier tests in this process (local models,
# torch) can pin the BLAS pool, which would hide whether loading the router sets it.
PROBE = """
import json, sys
import numpy
from threadpoolctl import threadpool_info, threadpool_limits
from gateway.state import load_router

def blas():
    return sorted({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})

threadpool_limits(limits=2, user_api="blas")  # as numpy starts on a 2-core machine
before = blas()
assert load_router(sys.argv[1]) is not None
print(json.dumps({"before": before, "after": blas()}))
"""


def test_loading_a_router_limits_blas_to_the_router_threads() -> None:
    env = {**os.environ, "TTC_ROUTER_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", PROBE, str(BUILT_IN_ARTIFACT)], env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    pools = json.loads(out.stdout.strip().splitlines()[-1])
    assert pools == {"before": [2], "after": [1]}
