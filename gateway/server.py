"""Runs the app under uvicorn, with SIGHUP reload and a graceful SIGTERM."""

from __future__ import annotations

import logging
import os
from typing import Any

import uvicorn
from fastapi import FastAPI

from gateway.app import create_app
from gateway.runtime import ConfigSource, GatewayRuntime

log = logging.getLogger("ttc.server")

CONFIG_ENV = "TTC_CONFIG"


def app_from_env() -> FastAPI:
    """uvicorn factory for worker processes: the config path travels in the environment."""
    runtime = GatewayRuntime(ConfigSource(os.environ.get(CONFIG_ENV) or None))
    return create_app(runtime=runtime)


def uvicorn_kwargs(host: str, port: int, workers: int, graceful_timeout_s: float, log_level: str) -> dict[str, Any]:
    return {
        "host": host,
        "port": port,
        "workers": workers,
        "factory": True,
        "loop": "auto",  # uvloop when installed
        "http": "auto",  # httptools when installed
        "timeout_graceful_shutdown": graceful_timeout_s,
        "log_level": log_level,
        "access_log": False,
        "timeout_keep_alive": 30,
    }


def serve(config_path: str | None, host: str, port: int, workers: int, graceful_timeout_s: float | None = None, log_level: str = "info") -> None:
    source = ConfigSource(config_path)
    config = source.load()  # fail fast, with the readable message, before any worker starts
    if config_path:
        os.environ[CONFIG_ENV] = os.path.abspath(config_path)
    else:
        os.environ.pop(CONFIG_ENV, None)
    timeout = graceful_timeout_s if graceful_timeout_s is not None else config.server.graceful_timeout_s
    uvicorn.run("gateway.server:app_from_env", **uvicorn_kwargs(host, port, workers, timeout, log_level))
