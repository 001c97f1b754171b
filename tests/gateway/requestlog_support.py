"""Request-log fixtures and helpers: a `request_log:` section per store, on real stores only.

PostgreSQL: a uniquely named database on the server at 127.0.0.1:5432 (or TTC_TEST_POSTGRES_URL),
dropped afterwards. With no server reachable the tests fail, saying what to start; they never
skip."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit.postgres import PostgresUnavailable, temporary_database

FAST = {"flush_interval_s": 0.05, "replay_interval_s": 0.2}


@pytest.fixture
def postgres_url() -> Iterator[str]:
    database = temporary_database()
    try:
        url = database.__enter__()
    except PostgresUnavailable as error:
        problem = str(error)
    else:
        problem = None
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    try:
        yield url
    finally:
        database.__exit__(None, None, None)


@pytest.fixture(params=["sqlite", "postgres"])
def log_section(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A `request_log:` section private to one test, for each store."""
    section: dict[str, Any] = {"spool_path": str(tmp_path / "requests.spool"), **FAST}
    if request.param == "sqlite":
        return {**section, "path": str(tmp_path / "requests.db")}
    # Through the environment, as a production config would name a URL with a password in it.
    monkeypatch.setenv("TTC_TEST_REQUEST_LOG_URL", request.getfixturevalue("postgres_url"))
    return {**section, "postgres_url": "os.environ/TTC_TEST_REQUEST_LOG_URL"}


def rows(url: str, key: str, **params: str) -> list[dict[str, Any]]:
    """Every row the key may see (following the cursor), newest first."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = {**params, "limit": "100", **({"cursor": cursor} if cursor else {})}
        response = httpx.get(url + "/v1/requests", params=query, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert response.status_code == 200, response.text
        page = response.json()
        found += page["data"]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return found
