"""Put a challenger where the gateways look, atomically, and only when the gate passed.

The watched path (the gateway config's `router.artifact`) is a symbolic link to a versioned
copy in `.<name>.versions/<version>/` beside it. Promotion copies the challenger there and
swaps the link with one rename(2), so a replica polling the path sees the old artifact or the
new one, never a mix; each replica's watcher then reloads it (gateway/runtime.py), as for any
new artifact. A watched path that is still a plain directory is moved into the versions folder
and replaced by a link on the first promotion: between those two renames the path is briefly
missing, which a replica's reload treats like any unreadable artifact (it keeps the one it has).
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from pydantic import BaseModel

from router.artifact import read_manifest


class PromoteResult(BaseModel):
    promoted: bool
    reason: str
    target: str
    challenger_version: str
    champion_version: str | None
    installed_at: str | None = None  # the versioned copy the target now links to


def versions_dir(target: Path) -> Path:
    return target.parent / f".{target.name}.versions"


def install(challenger: Path, target: Path) -> Path:
    """Copy `challenger` into the versions folder and point `target` at it (atomic swap)."""
    version = read_manifest(challenger).version
    store = versions_dir(target)
    store.mkdir(parents=True, exist_ok=True)
    final = store / version
    if not final.exists():
        staging = store / f".staging-{version}-{uuid.uuid4().hex[:8]}"
        shutil.copytree(challenger, staging)
        staging.rename(final)  # complete before anything points at it
    if target.exists() and not target.is_symlink():
        old_version = read_manifest(target).version
        keep = store / old_version
        target.rename(keep if not keep.exists() else store / f"{old_version}-{uuid.uuid4().hex[:8]}")
    link = target.parent / f".{target.name}.link-{uuid.uuid4().hex[:8]}"
    os.symlink(os.path.relpath(final, target.parent), link)
    os.replace(link, target)  # rename(2) over the old link: the one atomic step
    return final


def promote(challenger: Path, target: Path, *, gate_passed: bool, gate_reason: str) -> PromoteResult:
    """Install the challenger if the gate passed; otherwise leave the target untouched."""
    challenger_version = read_manifest(challenger).version
    champion_version = read_manifest(target).version if target.exists() else None
    if not gate_passed:
        return PromoteResult(promoted=False, reason=f"refused: {gate_reason}", target=str(target),
                             challenger_version=challenger_version, champion_version=champion_version)
    final = install(challenger, target)
    return PromoteResult(promoted=True, reason=f"promoted: {gate_reason}", target=str(target),
                         challenger_version=challenger_version, champion_version=champion_version,
                         installed_at=str(final))
