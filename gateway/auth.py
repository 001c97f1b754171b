"""API key → tenant resolution. Keys are stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from gateway.config import GatewayConfig, TenantConfig

KEY_PREFIX = "sk-ttc-"


def hash_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh random key and the hash to put in the config."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, hash_key(key)


def key_id_of(key_hash: str) -> str:
    # A short, non-secret handle for a key: enough to tell keys apart in usage and logs.
    return key_hash.split(":", 1)[1][:12]


@dataclass(frozen=True)
class TenantPrincipal:
    """A tenant calling with one of its keys: the only principal that may make model requests."""

    tenant: TenantConfig
    key_id: str


@dataclass(frozen=True)
class AdminPrincipal:
    """The operator's admin key: manages tenants and reloads, never makes model requests."""

    key_id: str = "admin"


Principal = TenantPrincipal | AdminPrincipal


class KeyIndex:
    """Constant-time lookup of a presented key by its hash."""

    def __init__(self, config: GatewayConfig) -> None:
        self._by_hash: dict[str, Principal] = {}
        for tenant in config.tenants:
            for key_hash in tenant.api_key_hashes + [k.hash for k in tenant.api_keys]:
                self._by_hash[key_hash] = TenantPrincipal(tenant=tenant, key_id=key_id_of(key_hash))
        if config.admin_key_hash:
            self._by_hash[config.admin_key_hash] = AdminPrincipal()

    def lookup(self, presented_key: str) -> Principal | None:
        return self._by_hash.get(hash_key(presented_key))


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
