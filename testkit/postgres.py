"""A throwaway PostgreSQL database on a real server, for tests and benchmarks.

The server is 127.0.0.1:5432 with trust auth for user `postgres` (PostgreSQL 15 runs there on
these machines and in CI), or whatever `TTC_TEST_POSTGRES_URL` names. Each caller gets a uniquely
named database, dropped afterwards, so runs never see each other's rows."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import make_conninfo

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


class PostgresUnavailable(RuntimeError):
    pass


def server_url() -> str:
    return os.environ.get("TTC_TEST_POSTGRES_URL", DEFAULT_URL)


def unavailable_message(url: str, error: Exception) -> str:
    return (f"PostgreSQL is not reachable at {url} ({error}). The request-log tests need a real PostgreSQL: start "
            "PostgreSQL 15 on 127.0.0.1:5432 with trust auth for user 'postgres' (e.g. `pg_ctlcluster 15 main start`, "
            "or `initdb`/`pg_ctl` run as the postgres user), or point TTC_TEST_POSTGRES_URL at a server where that "
            "user may CREATE DATABASE.")


@contextmanager
def temporary_database(prefix: str = "ttc_test") -> Iterator[str]:
    """Yields the URL of a fresh, empty database; drops it (closing its sessions) afterwards."""
    url = server_url()
    try:
        admin = psycopg.connect(url, autocommit=True, connect_timeout=5)
    except psycopg.Error as error:
        raise PostgresUnavailable(unavailable_message(url, error)) from error
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield make_conninfo(url, dbname=name)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()
