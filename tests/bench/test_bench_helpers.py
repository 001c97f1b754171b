"""The bench scripts' pure helpers: percentiles, /proc parsing, distinct prompts, RESULTS.md update,
and one real load run against the fake upstream (counts only; timings are never asserted)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.gateway.compare import (
    RESULTS_BEGIN,
    RESULTS_END,
    parse_stat,
    paused,
    tree_cpu_s,
    update_results,
    worker_cpu_s,
    worker_shares,
)
from bench.gateway.load import LoadSpec, make_prompt, percentile, run_load
from testkit.fake_upstream import FakeUpstream
from testkit.servers import ThreadedServer


def test_percentile_is_nearest_rank() -> None:
    values = [float(x) for x in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert percentile(list(reversed(values)), 90) == 90.0


def test_percentile_of_nothing_is_nan() -> None:
    assert percentile([], 50) != percentile([], 50)  # nan


def test_parse_stat_handles_spaces_and_parentheses_in_the_name() -> None:
    fields = ["S", "42"] + ["0"] * 9 + ["300", "200"] + ["0"] * 30
    pid, ppid, cpu = parse_stat("1234 (my (weird) proc) " + " ".join(fields))
    assert (pid, ppid) == (1234, 42)
    assert cpu == (300 + 200) / os.sysconf("SC_CLK_TCK")


def test_tree_cpu_counts_this_process() -> None:
    assert tree_cpu_s(os.getpid()) > 0
    assert tree_cpu_s(2**22 + 12345) == 0.0  # no such process


def test_worker_shares_split_the_cpu_the_workers_used_between_readings() -> None:
    before = {10: 5.0, 11: 1.0}
    after = {10: 8.0, 11: 2.0}  # used 3 s and 1 s
    assert worker_shares(before, after) == [0.75, 0.25]
    assert worker_shares({10: 1.0}, {10: 2.0}) == []  # one worker: nothing to split
    assert worker_shares(before, before) == []  # idle


def test_worker_cpu_reads_each_child_subtree() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\ntime.sleep(5)"])
    try:
        time.sleep(1.0)
        cpu = worker_cpu_s(os.getpid())
        assert child.pid in cpu and cpu[child.pid] >= 0.2
    finally:
        child.kill()
        child.wait()


def test_prompts_are_distinct() -> None:
    prompts = {make_prompt(i, "abcd", 24) for i in range(5000)}
    assert len(prompts) == 5000


def test_update_results_replaces_only_its_own_section(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    path.write_text("# Results\n\nhand-written notes\n")
    update_results(path, "first run\n")
    update_results(path, "second run\n")
    text = path.read_text()
    assert "hand-written notes" in text
    assert "second run" in text and "first run" not in text
    assert text.count(RESULTS_BEGIN) == 1 and text.count(RESULTS_END) == 1


def test_load_run_counts_requests_and_errors() -> None:
    with ThreadedServer(FakeUpstream(record=False), health_path="/_requests") as server:
        ok = asyncio.run(run_load(LoadSpec(url=server.url, model="fast", n=30, concurrency=4, max_tokens=3)))
        streamed = asyncio.run(run_load(LoadSpec(url=server.url, model="fast", n=10, concurrency=2, stream=True, max_tokens=3)))
        failing = asyncio.run(run_load(LoadSpec(url=server.url, model="error-500", n=5, concurrency=1)))
    assert (ok["ok"], ok["errors"], ok["n"]) == (30, 0, 30)
    assert (streamed["ok"], streamed["errors"]) == (10, 0)
    assert "ttfb_p50_ms" in streamed
    assert (failing["ok"], failing["errors"]) == (0, 5)
    assert any("http 500" in k for k in failing["error_samples"])


def _states(pids: list[int], settle_for: str | None = None) -> list[str]:
    """Process states from /proc; with `settle_for`, polls briefly, since signals are delivered asynchronously."""
    for _ in range(200):
        states = [Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] for pid in pids]
        if settle_for is None or all(state == settle_for for state in states):
            return states
        time.sleep(0.01)
    return states


def test_paused_stops_whole_process_groups_and_resumes_them() -> None:
    # A parent with a child in its own session, like a uvicorn server with workers.
    script = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        for _ in range(100):
            children = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
            if children:
                break
            time.sleep(0.05)
        group = [proc.pid, *children]
        with paused([proc.pid, 999_999_999]):  # a group that is gone is skipped
            assert _states(group, settle_for="T") == ["T", "T"]
        assert "T" not in _states(group, settle_for="S")
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()
