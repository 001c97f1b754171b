"""`ttc requests export --format parquet`: the log's rows as a Parquet file, written one row group
at a time, so memory stays at one group whatever the range (pyarrow, the `export` extra).

The columns are the JSON lines' fields with the same names and values. `router`, `calls` and
`messages` hold JSON text (their shapes vary by router version and message kind, and a fixed
Parquet struct would break on the first new key); `time` is unix seconds, as in the API."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from gateway.requestlog.row import LogRow
from gateway.requestlog.store import COLUMNS, JSON_COLUMNS

ROW_GROUP = 10_000
INSTALL_HINT = "parquet export needs pyarrow: pip install 'ttc-gateway[export]'"


class ParquetUnavailable(RuntimeError):
    pass


def _schema() -> Any:
    try:
        import pyarrow as pa
    except ImportError as error:
        raise ParquetUnavailable(INSTALL_HINT) from error
    types: dict[str, Any] = {"time": pa.float64(), "explored": pa.bool_(), "degraded": pa.bool_(), "log_content": pa.bool_(),
                             "propensity": pa.float64(), "strategy_n": pa.int64(), "prompt_tokens": pa.int64(),
                             "completion_tokens": pa.int64(), "cost_usd": pa.float64(), "latency_s": pa.float64(),
                             "first_byte_s": pa.float64()}
    return pa.schema([(column, types.get(column, pa.string())) for column in COLUMNS])


def write_parquet(rows: Iterable[LogRow], sink: str | Path | BinaryIO, row_group: int | None = None) -> int:
    """Every row into `sink`, `row_group` rows (default ROW_GROUP) at a time; returns how many."""
    row_group = row_group or ROW_GROUP
    schema = _schema()
    import pyarrow as pa
    import pyarrow.parquet as pq

    written = 0
    batch: dict[str, list[Any]] = {column: [] for column in COLUMNS}
    with pq.ParquetWriter(sink, schema, compression="zstd") as writer:

        def flush() -> None:
            writer.write_table(pa.Table.from_pydict(batch, schema=schema), row_group_size=row_group)
            for values in batch.values():
                values.clear()

        for row in rows:
            data = row.model_dump()
            for column in COLUMNS:
                value = data[column]
                batch[column].append(orjson.dumps(value).decode() if column in JSON_COLUMNS and value is not None else value)
            written += 1
            if written % row_group == 0:
                flush()
        if written % row_group or written == 0:
            flush()  # the last, partial group (or an empty file that still has the schema)
    return written
