"""`ttc requests export`: the request log as JSON lines or Parquet, oldest first, in constant memory (the
stores stream: a server-side cursor in PostgreSQL). The flywheel's training job reads this."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import orjson
import typer

from gateway.config import ConfigError, load_config, resolve_secret
from gateway.errors import GatewayError
from gateway.requestlog.api import parse_time
from gateway.requestlog.store import RequestStore, StoreUnavailable

app = typer.Typer(help="The request log.", no_args_is_help=True)


@app.callback()
def requests() -> None:
    """The request log."""  # a group even with one command, so the command keeps its name


def open_store(config_path: str) -> RequestStore:
    config = load_config(config_path)
    settings = config.request_log
    if settings.postgres_url:
        from gateway.requestlog.postgres_store import PostgresRequestStore

        return PostgresRequestStore(resolve_secret(settings.postgres_url), settings.retention_days, settings.store_timeout_s)
    from gateway.requestlog.sqlite_store import SqliteRequestStore
    from gateway.requestlog.writer import default_dir

    return SqliteRequestStore(settings.sqlite_path(default_dir(config.ledger)), settings.retention_days)


@app.command("export")
def export(
    config: str = typer.Option(..., "--config", "-c", help="The gateway's config YAML (names the store)."),
    since: Optional[str] = typer.Option(None, help="From this time (unix seconds or ISO 8601, UTC if no zone)."),
    until: Optional[str] = typer.Option(None, help="Up to this time, exclusive."),
    tenant: Optional[str] = typer.Option(None, help="One tenant only."),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl, or parquet (needs pyarrow: the `export` extra)."),
    out: str = typer.Option("-", help="Output file; '-' is stdout (jsonl only)."),
) -> None:
    """Write every row in [since, until), oldest first: one JSON object per line, or Parquet row groups."""
    if fmt not in ("jsonl", "parquet"):
        typer.echo(f"unsupported --format {fmt!r}: jsonl or parquet", err=True)
        raise typer.Exit(2)
    if fmt == "parquet" and out == "-":
        typer.echo("--format parquet needs --out FILE (a Parquet file ends with its index, so not stdout)", err=True)
        raise typer.Exit(2)
    try:
        store = open_store(config)
        start, end = parse_time(since, "since"), parse_time(until, "until")
    except ConfigError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    except GatewayError as error:  # a bad --since/--until
        typer.echo(error.message.replace("'since'", "--since").replace("'until'", "--until"), err=True)
        raise typer.Exit(2) from None
    if fmt == "parquet":
        from gateway.requestlog.parquet import ParquetUnavailable, write_parquet

        try:
            written = write_parquet(store.iter_rows(start, end, tenant), out)
        except ParquetUnavailable as error:
            typer.echo(str(error), err=True)
            raise typer.Exit(2) from None
        except StoreUnavailable as error:
            typer.echo(str(error), err=True)
            raise typer.Exit(1) from None
        finally:
            store.close()
        typer.echo(f"exported {written} rows", err=True)
        return
    sink = sys.stdout.buffer if out == "-" else Path(out).open("wb")
    written = 0
    try:
        for row in store.iter_rows(start, end, tenant):
            sink.write(orjson.dumps(row.model_dump()) + b"\n")
            written += 1
    except StoreUnavailable as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(1) from None
    finally:
        if sink is not sys.stdout.buffer:
            sink.close()
        store.close()
    typer.echo(f"exported {written} rows", err=True)
