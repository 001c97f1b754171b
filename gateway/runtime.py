"""Owns the current GatewayState: builds it, reloads it on SIGHUP or file change, closes it."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
from dataclasses import dataclass
from pathlib import Path

from gateway.config import GatewayConfig, load_config, parse_config, resolve_secret
from gateway.ledger.settings import LedgerSettings
from gateway.defaults import default_config_data, demo_key
from gateway.accounting import budget_scope
from gateway.inflight import InFlight
from gateway.ledger import Ledger, LedgerUnavailable, make_ledger
from gateway.metrics import Metrics
from gateway.requestlog.writer import RequestLog, open_request_log
from gateway.state import GatewayState, artifact_fingerprint, load_router, load_strategy_files
from gateway.upstream import Upstreams

log = logging.getLogger("ttc.runtime")

BUDGET_GAUGE_INTERVAL_S = 10.0


@dataclass(frozen=True)
class ConfigSource:
    """A YAML file, or the built-in defaults when `path` is None."""

    path: str | None = None

    def load(self) -> GatewayConfig:
        if self.path is None:
            return parse_config(default_config_data(demo_key()), "<built-in defaults>")
        return load_config(self.path)

    def fingerprint(self) -> str | None:
        if self.path is None:
            return None
        try:
            return hashlib.sha256(Path(self.path).read_bytes()).hexdigest()
        except OSError:
            return None


def build_ledger(settings: LedgerSettings) -> Ledger:
    if settings.redis_url:
        # The URL may carry a password, so it may come from the environment like other secrets.
        settings = settings.model_copy(update={"redis_url": resolve_secret(settings.redis_url)})
    # Spooled: a settle that cannot reach the store waits on local disk instead of being lost.
    return make_ledger(settings, spool=True)


class GatewayRuntime:
    def __init__(self, source: ConfigSource) -> None:
        self.source = source
        self.metrics = Metrics()
        self.upstreams = Upstreams()
        self.inflight = InFlight()
        self._state: GatewayState | None = None
        self._config_fingerprint: str | None = None
        self._rejected_fingerprint: str | None = None
        self._old_ledgers: list[Ledger] = []
        self._reload_lock = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None
        self._gauges: asyncio.Task[None] | None = None
        # Built once at start (a changed `request_log:` section takes a restart): it owns a writer task and a spool.
        self.request_log: RequestLog | None = None

    @property
    def state(self) -> GatewayState:
        if self._state is None:
            raise RuntimeError("gateway runtime not started")
        return self._state

    @property
    def ready(self) -> bool:
        return self._state is not None

    async def start(self) -> None:
        config = self.source.load()
        self._config_fingerprint = self.source.fingerprint()
        router_fp = artifact_fingerprint(config.router.artifact)
        router = await asyncio.to_thread(load_router, config.router.artifact)
        ledger = build_ledger(config.ledger)
        self.request_log = open_request_log(config.request_log, config.ledger, self.metrics)
        if self.request_log is not None:
            await self.request_log.start()  # replays what a previous process left in its spool
        self._state = GatewayState.build(config, ledger, self.upstreams, self.metrics, self.inflight, router, router_fp,
                                         extra_observers=self._observers())
        await ledger.start()  # replays what a previous process left in the spool, then keeps replaying
        if config.server.watch_interval_s > 0:
            self._watcher = asyncio.create_task(self._watch(config.server.watch_interval_s))
        self._gauges = asyncio.create_task(self._refresh_budget_gauges(BUDGET_GAUGE_INTERVAL_S))

    def _observers(self) -> list[RequestLog]:
        return [self.request_log] if self.request_log is not None else []

    def install_sighup(self) -> None:
        """Reload on SIGHUP. Only the main thread may own signals; elsewhere the file watcher serves."""
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload("SIGHUP")))
        except (NotImplementedError, RuntimeError, ValueError):
            log.debug("SIGHUP reload not available in this thread")

    async def reload(self, reason: str = "SIGHUP") -> bool:
        """Build a new state from the source; keep the old one if the new config is invalid."""
        async with self._reload_lock:
            old = self.state
            fingerprint = self.source.fingerprint()
            try:
                config = self.source.load()
                # The strategy files first: a bad one rejects the edit before a ledger or router is built.
                strategy_files = load_strategy_files(config)
            except Exception as error:  # a bad edit must not take a running gateway down
                self._rejected_fingerprint = fingerprint  # the watcher waits for the next edit
                log.error("config reload (%s) rejected, keeping the running config: %s", reason, error)
                return False
            ledger = old.ledger
            if config.ledger != old.config.ledger:
                ledger = build_ledger(config.ledger)
                await ledger.start()
                self._old_ledgers.append(old.ledger)  # keeps replaying its spool until close
            router, router_fp = old.router, old.router_fingerprint
            new_fp = artifact_fingerprint(config.router.artifact)
            if config.router.artifact != old.config.router.artifact or new_fp != old.router_fingerprint:
                try:
                    router = await asyncio.to_thread(load_router, config.router.artifact)
                    router_fp = new_fp
                except Exception as error:
                    log.error("router artifact reload failed, keeping the previous one: %s", error)
            self._state = GatewayState.build(config, ledger, self.upstreams, self.metrics, self.inflight, router, router_fp,
                                             strategy_files, self._observers())
            self._config_fingerprint = fingerprint
            log.info("config reloaded (%s): %d models, %d tenants", reason, len(config.models), len(config.tenants))
            return True

    async def _watch(self, interval_s: float) -> None:
        # Polling rather than inotify: it works the same on every filesystem, including the
        # ConfigMap symlink swaps Kubernetes does, and it costs one stat per interval.
        while True:
            await asyncio.sleep(interval_s)
            try:
                state = self.state
                fingerprint = self.source.fingerprint()
                config_changed = fingerprint not in (self._config_fingerprint, self._rejected_fingerprint)
                router_changed = artifact_fingerprint(state.config.router.artifact) != state.router_fingerprint
                if config_changed or router_changed:
                    await self.reload("file changed" if config_changed else "router artifact changed")
            except Exception:
                log.exception("config watcher iteration failed")

    async def refresh_budget_gauges(self) -> None:
        """Per-window remaining budget for the tenants that had traffic: one ledger read each."""
        state = self.state
        tenants = {t.id: t for t in state.config.tenants}
        active, self.metrics.active_tenants = self.metrics.active_tenants, set()
        for tenant_id in active:
            tenant = tenants.get(tenant_id)
            if tenant is None or not tenant.budgets:
                continue
            try:
                report = await state.ledger.usage(budget_scope(tenant, None))
            except LedgerUnavailable:
                self.metrics.active_tenants.add(tenant_id)  # try again next round
                continue
            for window in report.windows:
                self.metrics.budget_remaining.labels(tenant_id, window.window).set(window.remaining_usd)

    async def _refresh_budget_gauges(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.refresh_budget_gauges()
            except Exception:
                log.exception("budget gauge refresh failed")

    async def close(self) -> None:
        for task in (self._watcher, self._gauges):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.inflight.drain()  # before the ledger closes: settle what was cut off
        if self.request_log is not None:  # after the drain: the cut-off requests' rows are queued
            await self.request_log.close()
        # Closing a ledger stops its spool replay after a last attempt; what is left stays on
        # disk for the next start.
        if self._state is not None:
            await self._state.ledger.close()
        for ledger in self._old_ledgers:
            await ledger.close()
        await self.upstreams.aclose()
