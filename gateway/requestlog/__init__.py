"""The request log: one row per request that got past authentication, in SQLite (embedded) or
PostgreSQL, written off the hot path (`writer.py`), spooled to local disk while the store is slow
or down (`spool.py`), and read through `/v1/requests` and `/v1/feedback` (`api.py`).

Kept empty on purpose: `gateway.config` imports `settings`, and the store modules import the
config's neighbours, so re-exporting here would make an import cycle."""
