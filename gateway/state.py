"""Everything a request needs, built from one config. Swapped whole on reload.

A request takes a reference to the current `GatewayState` when it starts and keeps it until it
ends, so a reload (SIGHUP or a changed file) never disturbs in-flight requests.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from gateway.auth import AdminPrincipal, KeyIndex
from gateway.config import GatewayConfig, ModelConfig, TenantConfig, resolve_secret
from gateway.inflight import InFlight
from gateway.ledger import Ledger
from gateway.metrics import Metrics
from gateway.pipeline.observe import MetricsObserver, Observer
from gateway.upstream import Upstreams

if TYPE_CHECKING:
    from router import Router
    from strategies import EscalationModel, StoppingPolicy

log = logging.getLogger("ttc.state")


@dataclass
class GatewayState:
    config: GatewayConfig
    keys: KeyIndex
    ledger: Ledger
    upstreams: Upstreams
    metrics: Metrics
    inflight: InFlight
    router: Router | None = None  # imported lazily: the embedder's runtime is heavy
    router_fingerprint: str | None = None
    strategy_policy: StoppingPolicy | None = None
    escalation_model: EscalationModel | None = None
    models_by_name: dict[str, ModelConfig] = field(default_factory=dict)
    # Each finished request's record goes to every observer (metrics; a request log).
    observers: list[Observer] = field(default_factory=list)
    metrics_token: str | None = None

    @classmethod
    def build(cls, config: GatewayConfig, ledger: Ledger, upstreams: Upstreams, metrics: Metrics, inflight: InFlight,
              router: Router | None = None, router_fingerprint: str | None = None,
              strategy_files: StrategyFiles | None = None, extra_observers: Sequence[Observer] = ()) -> GatewayState:
        files = strategy_files or load_strategy_files(config)
        return cls(
            config=config,
            keys=KeyIndex(config),
            ledger=ledger,
            upstreams=upstreams,
            metrics=metrics,
            inflight=inflight,
            router=router,
            router_fingerprint=router_fingerprint,
            strategy_policy=files.policy,
            escalation_model=files.escalation,
            models_by_name={m.name: m for m in config.models},
            # The runtime's long-lived observers (the request log) outlive any one state.
            observers=[MetricsObserver(metrics), *extra_observers],
            metrics_token=resolve_secret(config.server.metrics_token) if config.server.metrics_token else None,
        )

    def may_read_metrics(self, presented_key: str | None) -> bool:
        if self.metrics_token is None:
            return True
        if presented_key is None:
            return False
        return hmac.compare_digest(presented_key, self.metrics_token) or isinstance(self.keys.lookup(presented_key), AdminPrincipal)

    def visible_models(self, tenant: TenantConfig) -> list[ModelConfig]:
        return [m for m in self.config.models if tenant.allows(m.name)]


def artifact_fingerprint(path: str | None) -> str | None:
    """Notices a replaced router artifact, cheaply enough to poll every few seconds.

    The manifest is hashed by content (every new artifact carries a new version there, even when
    a copy keeps file sizes and mtimes); the larger estimator files only by size and mtime, so
    polling never reads megabytes.
    """
    if not path:
        return None
    root = Path(path)
    if not root.exists():
        return None
    digest = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    for file in files:
        stat = file.stat()
        name = file.relative_to(root) if root.is_dir() else file.name
        digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        if file.name == "manifest.json":
            digest.update(file.read_bytes())
    return digest.hexdigest()


def limit_blas_threads(threads: int) -> None:
    """Cap numpy's BLAS pool at the router's thread count.

    A decision's matrix-vector products are tiny. With OpenBLAS's default pool (one thread per
    core) each one wakes and synchronises every thread, and on a busy 2-core machine one
    (1 x 384) @ (384 x 4000) product measured 8 ms instead of 0.08 ms.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")


def load_router(path: str | None) -> Router | None:
    if not path:
        return None
    from router import load_router as load

    router = load(path)
    if router.models:
        # Load the embedder now, at (re)load time, not inside the first routed request.
        from router import Candidate

        router.route("warm up", [Candidate(name=router.models[0], input_per_1m=0.0, output_per_1m=0.0, prompt_tokens=1)])
    # After the warm-up: loading the embedder can bring in another BLAS library (torch's).
    limit_blas_threads(int(os.environ.get("TTC_ROUTER_THREADS", "1")))
    log.info("loaded router artifact %s (version %s)", path, router.version)
    return router


class StrategyFiles(NamedTuple):
    """The fitted files the strategies read (adaptive's policy, cascade's escalation model)."""

    policy: StoppingPolicy | None
    escalation: EscalationModel | None


def load_strategy_files(config: GatewayConfig) -> StrategyFiles:
    from strategies import EscalationModel, load_policy

    files = config.strategies

    return StrategyFiles(load_policy(files.policy) if files.policy else None,
                         EscalationModel.load(files.escalation) if files.escalation else None)
