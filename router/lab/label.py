"""Label your own traffic: counterfactual answers, a judge's grades, and the judge's calibration.

For a seeded sample of logged requests whose content was kept, every candidate model's answer
is obtained (the served one from the log; the others by calling the model), then a judge model
grades them, in one of two ways:

* `absolute`: each answer on a 1-10 scale mapped to [0, 1];
* `pairwise`: each answer against the reference (the strongest candidate's answer to the same
  request), asked twice with the two answers' positions swapped, since judges favour one
  position; the raw score is the answer's mean preference (win 1, tie 0.5, loss 0). The
  reference is the yardstick and scores 1, so a row says "as good as the strongest model", the
  label RouteLLM trained its routers on.

The judge's cut (the raw score from which an answer counts as right) is chosen where it best
agrees with whatever ground truth exists: feedback scores of served answers (`POST /v1/feedback`)
and gold outcome rows. The rows written carry `source` (judge, feedback, gold) and the judge's
identity.

Every call, candidate or judge, goes through a `ChargedModels` the caller provides: the gateway
implements it over its upstream layer and ledger (gateway/commands/router.py), charging a
tenant and holding each call's worst case against the run's budget before it starts, so the run
can never spend past `--budget-usd`. A refused hold raises `BudgetExhausted`; no further call
starts after the first one.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel

from contracts.outcomes import OutcomeRow
from contracts.prompts import conversation_text
from router.lab.collect import CompletionOutcome
from router.lab.logdata import LoggedRequest, labelable

DEFAULT_RUBRIC = (
    "You grade an AI assistant's answer to a user's request. Judge whether the answer is correct, "
    "complete and helpful. Reply with one integer from 1 (wrong or useless) to 10 (fully correct), "
    "and nothing else."
)
DEFAULT_PAIRWISE_RUBRIC = (
    "You compare two AI assistants' answers to the same user request. Decide which answer is more "
    "correct, complete and helpful; if they are equally good or equally bad, say TIE. Reply with "
    "A, B or TIE, and nothing else."
)
JUDGE_MAX_TOKENS = 8
DEFAULT_CUT = 0.5
Grading = Literal["absolute", "pairwise"]


class BudgetExhausted(Exception):
    """The ledger refused to hold the next call's worst case within the run's budget."""


@runtime_checkable
class ChargedModels(Protocol):
    """Models called on a tenant's account under a run budget (the gateway implements it)."""

    chat_models: tuple[str, ...]  # the ones the charged tenant may use

    async def complete(self, model: str, messages: list[dict[str, str]], max_tokens: int) -> CompletionOutcome:
        """One answer; raises BudgetExhausted when the budget cannot hold the call."""
        ...

    async def spent_usd(self) -> float:
        """What the ledger charged this run so far."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class LabelBackend(Protocol):
    """What `label` and `flywheel` need from a serving stack (the lab never imports the gateway)."""

    def open_charged(self, config: Path, tenant: str, budget_usd: float) -> ChargedModels:
        """The config's models, charged to `tenant` and capped at `budget_usd` by its ledger.
        Raise ValueError, with a message for the user, for a config or tenant it cannot use."""
        ...

    def stored_feedback(self, config: Path, requests: Sequence[tuple[str, str]]) -> dict[str, float]:
        """Feedback scores (`POST /v1/feedback`) kept in the config's request log for these
        (tenant, request id) pairs, by request id; requests without feedback are left out."""
        ...


class Calibration(BaseModel):
    """The judge against ground truth. `cut` maps raw grades to 0/1, chosen to maximize balanced
    accuracy (the mean of the right- and wrong-answer hit rates) where ground truth has both kinds,
    else plain agreement: with most answers right, "everything is right" agrees often and tells a
    router nothing. `agreement` and `balanced_accuracy` are measured with that cut, the `default_`
    ones with the default cut, so the report says what calibrating changed."""

    n: int
    cut: float
    agreement: float | None
    balanced_accuracy: float | None = None
    default_cut: float = DEFAULT_CUT
    default_agreement: float | None
    default_balanced_accuracy: float | None = None
    inherited: bool = False  # no ground truth this time: the cut of an earlier calibration


class LabelReport(BaseModel):
    judge: str
    rubric: str
    grading: Grading = "absolute"
    reference: str | None = None  # pairwise: the answer every other one is compared with
    sampled: int
    labelled_requests: int
    rows: int
    calls: int
    failed_calls: int
    stopped_for_budget: bool
    budget_usd: float
    spent_usd: float
    calibration: Calibration


def parse_grade(text: str) -> float | None:
    """The first integer 1-10 in the judge's reply, mapped to [0, 1]; None if there is none."""
    match = re.search(r"\b(10|[1-9])\b", text)
    return None if match is None else (int(match.group(1)) - 1) / 9.0


_REQUEST, _ANSWER, _GRADE = "Request:\n", "\n\nAnswer:\n", "\n\nGrade (1-10):"


def judge_messages(request: LoggedRequest, answer: str, rubric: str) -> list[dict[str, str]]:
    conversation = conversation_text(request.messages or [])
    return [{"role": "system", "content": rubric},
            {"role": "user", "content": f"{_REQUEST}{conversation}{_ANSWER}{answer}{_GRADE}"}]


def parse_judge_message(content: str) -> tuple[str, str]:
    """(conversation, answer) from the user turn `judge_messages` writes: its inverse, kept beside
    it so that scripted judges (the flywheel simulation's) follow any change to the format. Exact
    unless the conversation itself holds the answer marker (the answer may hold anything)."""
    request, _, rest = content.partition(_ANSWER)
    return request.removeprefix(_REQUEST), rest.rsplit(_GRADE, 1)[0]


_FIRST, _SECOND, _VERDICT = "\n\nAnswer A:\n", "\n\nAnswer B:\n", "\n\nBetter answer (A, B or TIE):"


def pairwise_messages(request: LoggedRequest, first: str, second: str, rubric: str) -> list[dict[str, str]]:
    conversation = conversation_text(request.messages or [])
    return [{"role": "system", "content": rubric},
            {"role": "user", "content": f"{_REQUEST}{conversation}{_FIRST}{first}{_SECOND}{second}{_VERDICT}"}]


def parse_pairwise_message(content: str) -> tuple[str, str, str] | None:
    """(conversation, answer A, answer B) from the user turn `pairwise_messages` writes, or None
    for any other turn (an absolute grading request). Exact unless the conversation or answer A
    holds a marker."""
    if not content.endswith(_VERDICT) or _FIRST not in content:
        return None
    request, _, rest = content.removesuffix(_VERDICT).partition(_FIRST)
    first, _, second = rest.partition(_SECOND)
    return request.removeprefix(_REQUEST), first, second


def parse_preference(text: str) -> float | None:
    """The judge's pairwise verdict as the first answer's preference: A 1, TIE 0.5, B 0; None if unreadable."""
    # Capital A/B only: in prose, "a" is an article.
    match = re.search(r"\b(A|B|TIE|Tie|tie)\b", text.strip())
    if match is None:
        return None
    return {"a": 1.0, "tie": 0.5, "b": 0.0}[match.group(1).lower()]


def _scores(raw: np.ndarray, truth: np.ndarray, cut: float) -> tuple[float, float | None]:
    said = raw >= cut
    agreement = float((said == truth).mean())
    if truth.all() or not truth.any():
        return agreement, None
    return agreement, float((said[truth].mean() + (~said[~truth]).mean()) / 2.0)


def calibrate(raw: Sequence[float], truth: Sequence[float]) -> Calibration:
    """The cut on raw grades that best matches binary ground truth (truth >= 0.5 counts as right)."""
    r, t = np.asarray(raw, float), np.asarray(truth, float) >= 0.5
    if len(r) == 0:
        return Calibration(n=0, cut=DEFAULT_CUT, agreement=None, default_agreement=None)
    candidates = np.unique(np.concatenate([r, [DEFAULT_CUT, 1.01]]))
    scored = [_scores(r, t, float(c)) for c in candidates]
    key = [b if b is not None else a for a, b in scored]
    best = int(np.argmax(key))
    default = _scores(r, t, DEFAULT_CUT)
    return Calibration(n=len(r), cut=float(candidates[best]), agreement=scored[best][0],
                       balanced_accuracy=scored[best][1], default_agreement=default[0],
                       default_balanced_accuracy=default[1])


class _Run:
    """Calls under one budget: the first refusal stops every later call from starting."""

    def __init__(self, models: ChargedModels, concurrency: int) -> None:
        self.models = models
        self.sem = asyncio.Semaphore(max(1, concurrency))
        self.exhausted = False
        self.calls = 0
        self.failed = 0

    async def call(self, model: str, messages: list[dict[str, str]], max_tokens: int) -> CompletionOutcome | None:
        async with self.sem:
            if self.exhausted:
                return None
            try:
                result = await self.models.complete(model, messages, max_tokens)
            except BudgetExhausted:
                self.exhausted = True
                return None
            except Exception:  # noqa: BLE001 - one failed upstream call loses one answer, not the run
                self.calls += 1
                self.failed += 1
                return None
            self.calls += 1
            return result


def sample_requests(log: Sequence[LoggedRequest], sample: int, seed: int = 0,
                    exclude_ids: set[str] | None = None) -> list[LoggedRequest]:
    """A seeded sample of the labelable requests (content kept, answered), minus `exclude_ids`."""
    pool = [r for r in labelable(log) if r.request_id not in (exclude_ids or set())]
    return random.Random(seed).sample(pool, min(sample, len(pool)))


async def label(
    chosen: Sequence[LoggedRequest],
    models: ChargedModels,
    *,
    judge: str,
    candidates: Sequence[str],
    budget_usd: float,
    feedback: dict[str, float] | None = None,
    gold: Sequence[OutcomeRow] = (),
    rubric: str | None = None,
    grading: Grading = "absolute",
    reference: str | None = None,
    max_tokens: int = 512,
    concurrency: int = 4,
    previous: Calibration | None = None,
) -> tuple[list[OutcomeRow], LabelReport]:
    """Label the requests `chosen` (see `sample_requests`); returns the outcome rows and the report.
    Without ground truth among them, `previous` (an earlier run's calibration) supplies the cut.
    `rubric` replaces the judge's instructions of the chosen `grading`; pairwise grading needs the
    `reference` candidate."""
    if grading == "pairwise" and reference not in candidates:
        raise ValueError(f"pairwise grading compares with a reference candidate: {reference!r} is not one of {list(candidates)}")
    instructions = rubric or (DEFAULT_PAIRWISE_RUBRIC if grading == "pairwise" else DEFAULT_RUBRIC)
    run = _Run(models, concurrency)
    feedback = feedback or {}

    async def grade_absolute(request: LoggedRequest, answers: dict[str, CompletionOutcome]) -> dict[str, float]:
        names = list(answers)
        verdicts = await asyncio.gather(*(run.call(judge, judge_messages(request, answers[m].text, instructions),
                                                   JUDGE_MAX_TOKENS) for m in names))
        grades = {name: parse_grade(v.text) if v is not None else None for name, v in zip(names, verdicts, strict=True)}
        return {name: g for name, g in grades.items() if g is not None}

    async def grade_pairwise(request: LoggedRequest, answers: dict[str, CompletionOutcome]) -> dict[str, float]:
        assert reference is not None
        if reference not in answers:
            return {}  # nothing to compare with
        ref = answers[reference].text
        others = [m for m in answers if m != reference]
        calls = [pairwise_messages(request, answers[m].text, ref, instructions) for m in others]
        calls += [pairwise_messages(request, ref, answers[m].text, instructions) for m in others]
        verdicts = await asyncio.gather(*(run.call(judge, c, JUDGE_MAX_TOKENS) for c in calls))
        prefs = [parse_preference(v.text) if v is not None else None for v in verdicts]
        raw = {reference: 1.0}
        for i, name in enumerate(others):
            first, second = prefs[i], prefs[len(others) + i]
            seen = [p for p in (first, None if second is None else 1.0 - second) if p is not None]
            if seen:
                raw[name] = sum(seen) / len(seen)
        return raw

    async def one(request: LoggedRequest) -> list[tuple[str, CompletionOutcome, float]]:
        answers: dict[str, CompletionOutcome] = {
            request.served_model: CompletionOutcome(text=request.response_text or "", prompt_tokens=request.prompt_tokens,
                                                   completion_tokens=request.completion_tokens, cost_usd=request.cost_usd)}
        messages = [{"role": str(m.get("role", "user")), "content": str(m.get("content", ""))} for m in request.messages or []]
        others = [m for m in candidates if m != request.served_model]
        results = await asyncio.gather(*(run.call(m, messages, max_tokens) for m in others))
        answers.update({m: r for m, r in zip(others, results, strict=True) if r is not None})
        raw = await (grade_pairwise if grading == "pairwise" else grade_absolute)(request, answers)
        return [(name, answers[name], raw[name]) for name in answers if name in raw]

    per_request = await asyncio.gather(*(one(r) for r in chosen))
    raw_pairs: list[tuple[float, float]] = []
    gold_by_key = {(g.prompt, g.model): g.score for g in gold}
    yardstick = reference if grading == "pairwise" else None  # scores 1 by construction: nothing to calibrate
    for request, graded in zip(chosen, per_request, strict=True):
        for name, _, grade in graded:
            if name == yardstick:
                continue
            if name == request.served_model and request.request_id in feedback:
                raw_pairs.append((grade, feedback[request.request_id]))
            elif (request.prompt, name) in gold_by_key:
                raw_pairs.append((grade, gold_by_key[(request.prompt, name)]))
    calibration = calibrate([p[0] for p in raw_pairs], [p[1] for p in raw_pairs])
    if not raw_pairs and previous is not None and previous.n > 0:
        calibration = previous.model_copy(update={"inherited": True})
    rows: list[OutcomeRow] = []
    for request, graded in zip(chosen, per_request, strict=True):
        for name, answer, grade in graded:
            right = name == yardstick or grade >= calibration.cut
            rows.append(OutcomeRow(prompt=request.prompt, model=name, score=float(right),
                                   prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens,
                                   cost_usd=answer.cost_usd, id=request.request_id, response=answer.text,
                                   source="judge", judge=judge))
        if request.request_id in feedback:
            rows.append(OutcomeRow(prompt=request.prompt, model=request.served_model,
                                   score=min(1.0, max(0.0, feedback[request.request_id])),
                                   prompt_tokens=request.prompt_tokens, completion_tokens=request.completion_tokens,
                                   cost_usd=request.cost_usd, id=request.request_id, source="feedback"))
    rows += [g.model_copy(update={"source": "gold"}) for g in gold]
    report = LabelReport(judge=judge, rubric=instructions, grading=grading, reference=yardstick, sampled=len(chosen),
                         labelled_requests=sum(1 for g in per_request if g), rows=len(rows), calls=run.calls,
                         failed_calls=run.failed, stopped_for_budget=run.exhausted, budget_usd=budget_usd,
                         spent_usd=await models.spent_usd(), calibration=calibration)
    return rows, report
