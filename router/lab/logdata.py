"""The gateway's request log as the router lab reads it: an export file (`ttc requests export`,
JSON lines or Parquet), of which the lab needs only a few fields. The lab never imports the
gateway, so it validates its own narrow view of a row and ignores the rest."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from contracts.outcomes import OutcomeRow
from contracts.prompts import prompt_text
from router.lab.offpolicy import LoggedTraffic

# Which label of a served answer counts when a request has several: a person's word first.
REWARD_PRIORITY = {"gold": 0, "feedback": 1, "judge": 2, None: 0}


class LoggedRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    request_id: str
    tenant: str
    served_model: str
    status: str
    explored: bool = False
    propensity: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    messages: list[dict[str, object]] | None = None
    response_text: str | None = None

    @field_validator("messages", mode="before")
    @classmethod
    def _json_text(cls, value: object) -> object:
        """Parquet exports keep `messages` as JSON text."""
        return json.loads(value) if isinstance(value, str) else value

    @property
    def prompt(self) -> str:
        return prompt_text(self.messages or [])


class LogFileError(ValueError):
    """An export file the lab cannot read; the message names the file (and line)."""


def read_log(path: Path) -> list[LoggedRequest]:
    """Rows of a `ttc requests export` file (.parquet, else JSON lines)."""
    if not path.exists():
        raise LogFileError(f"request log export {path} does not exist")
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise LogFileError("reading a Parquet export needs pyarrow (the `export` extra)") from exc
        records: Iterable[dict[str, object]] = pq.read_table(path).to_pylist()
        return [_validate(r, f"{path}") for r in records]
    out = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LogFileError(f"{path}:{line_no}: not JSON: {exc}") from exc
            out.append(_validate(record, f"{path}:{line_no}"))
    return out


def _validate(record: object, where: str) -> LoggedRequest:
    try:
        return LoggedRequest.model_validate(record)
    except ValidationError as exc:
        raise LogFileError(f"{where}: not a request log row: {exc}") from exc


# The gateway logs the HTTP status it answered with ("200"); "ok" is what hand-written logs
# (older fixtures) say for the same thing.
ANSWERED = frozenset({"200", "ok"})


def labelable(rows: Sequence[LoggedRequest]) -> list[LoggedRequest]:
    """Answered requests whose content was kept (the tenant opted in to `log_content`)."""
    return [r for r in rows if r.status in ANSWERED and r.messages and r.response_text is not None and r.prompt]


def served_rewards(labels: Sequence[OutcomeRow]) -> dict[tuple[str, str], OutcomeRow]:
    """(request id, model) -> the label that counts for it (gold, then feedback, then judge)."""
    best: dict[tuple[str, str], OutcomeRow] = {}
    for row in labels:
        if row.id is None:
            continue
        key = (row.id, row.model)
        if key not in best or REWARD_PRIORITY[row.source] < REWARD_PRIORITY[best[key].source]:
            best[key] = row
    return best


def logged_traffic(log: Sequence[LoggedRequest], labels: Sequence[OutcomeRow],
                   models: Sequence[str]) -> tuple[list[LoggedRequest], LoggedTraffic]:
    """The requests usable off-policy (a propensity, a label of the served answer, a served model
    the routers know) and their decisions as arrays over `models`."""
    rewards = served_rewards(labels)
    index = {m: j for j, m in enumerate(models)}
    used = [r for r in log if r.propensity is not None and r.served_model in index and r.prompt
            and (r.request_id, r.served_model) in rewards]
    traffic = LoggedTraffic(
        served=np.array([index[r.served_model] for r in used], dtype=int),
        propensity=np.array([float(r.propensity or 0.0) for r in used]),
        reward=np.array([rewards[(r.request_id, r.served_model)].score for r in used]),
        cost=np.array([r.cost_usd for r in used]),
    )
    return used, traffic
