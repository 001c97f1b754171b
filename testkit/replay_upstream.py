"""An OpenAI-compatible upstream that replays recorded outcomes, and a scripted noisy judge.

For the router flywheel's simulation (bench/router/flywheel.py): each candidate model answers a
prompt with its recorded response (or, where the data set kept none, a placeholder that names
the model), with the recorded token counts as usage, so the gateway charges the recorded cost.
The model named `judge` grades an answer in the format router.lab.label.judge_messages writes:
the recorded score of that answer, flipped with probability epsilon. Asked to compare two answers
(router.lab.label.pairwise_messages), it reads each one's score that way and prefers the higher
(TIE when they are equal).

The flips are a hash of (seed, prompt, answer, how often that pair was judged before), not a
shared random stream: concurrent calls arrive in any order, and the run must not depend on it.

`RecordedAnswers` is the logic; `ReplayUpstream` serves it over HTTP (non-streaming chat only).
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

import orjson

from contracts.outcomes import OutcomeRow
from router.lab.label import CompletionOutcome, parse_judge_message, parse_pairwise_message
from router.lab.outcomes import prompt_key
from testkit.asgi import Receive, Send, read_body, run_lifespan, send_json

JUDGE = "judge"


def placeholder_answer(model: str) -> str:
    """What a model "says" where the data kept only its score: unique per model, so the judge can
    tell whose answer it grades."""
    return f"(recorded answer of {model}: not kept in the data set)"


class RecordedAnswers:
    """Recorded answers by (model, prompt), and the judge's grades of them."""

    def __init__(self, rows: Iterable[OutcomeRow], epsilon: float, seed: int, lenient: bool = False) -> None:
        self.rows = {(prompt_key(r.prompt), r.model): r for r in rows}
        self.truth = {(key, self.text(row).strip()): row.score for (key, _), row in self.rows.items()}
        self.models = tuple(sorted({model for _, model in self.rows}))
        self.epsilon = epsilon
        self.seed = seed
        self.lenient = lenient  # grades 9 (right) / 6 (wrong): the default cut counts both as right
        self.judged: Counter[tuple[str, str]] = Counter()

    @staticmethod
    def text(row: OutcomeRow) -> str:
        return row.response if row.response is not None else placeholder_answer(row.model)

    def complete(self, model: str, user_turn: str) -> CompletionOutcome:
        """`model`'s answer to the prompt, or the judge's grade of the answer in `user_turn`.
        Raises KeyError for what the data set did not record."""
        if model == JUDGE:
            # The judge's usage is nominal: its price, not its tokens, is what a run would tune.
            return CompletionOutcome(text=self.grade(user_turn), prompt_tokens=len(user_turn.split()) + 3,
                                    completion_tokens=1, cost_usd=0.0)
        return self.answer(model, user_turn)

    def score(self, prompt: str, model: str) -> float:
        """The recorded score of `model` on `prompt` (KeyError where none was recorded)."""
        return self.rows[(prompt_key(prompt), model)].score

    def answer(self, model: str, prompt: str) -> CompletionOutcome:
        """Raises KeyError for a (model, prompt) the data set did not record."""
        row = self.rows[(prompt_key(prompt), model)]
        return CompletionOutcome(text=self.text(row), prompt_tokens=row.prompt_tokens or 0,
                                completion_tokens=row.completion_tokens or 0, cost_usd=row.cost_usd or 0.0)

    def grade(self, judge_prompt: str) -> str:
        """The judge's reply to the user turn of router.lab.label.judge_messages or pairwise_messages."""
        pair = parse_pairwise_message(judge_prompt)
        if pair is not None:
            request, first, second = pair
            a, b = self._noisy_score(request, first), self._noisy_score(request, second)
            return "A" if a > b else "B" if b > a else "TIE"
        request, answer = parse_judge_message(judge_prompt)
        score = self._noisy_score(request, answer)
        if self.lenient:
            return "9" if score >= 0.5 else "6"
        return str(round(1 + 9 * score))  # 1..10; binary scores give 1 or 10

    def _noisy_score(self, request: str, answer: str) -> float:
        key = (prompt_key(request), answer.strip())
        score = self.truth[key]
        self.judged[key] += 1
        return 1.0 - score if self._flip(key, self.judged[key]) else score

    def _flip(self, key: tuple[str, str], nth: int) -> bool:
        digest = hashlib.sha256(f"{self.seed}|{key[0]}|{key[1]}|{nth}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.epsilon


class ReplayUpstream:
    """`POST /v1/chat/completions` over `RecordedAnswers`; the last user turn is the prompt."""

    def __init__(self, answers: RecordedAnswers) -> None:
        self.answers = answers

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await run_lifespan(receive, send)
            return
        if scope["method"] == "GET" and scope["path"] == "/health":
            await send_json(send, 200, {"models": [*self.answers.models, JUDGE]})
            return
        if not scope["path"].endswith("/chat/completions"):
            await send_json(send, 404, {"error": {"message": "not found", "type": "invalid_request_error"}})
            return
        body = orjson.loads(await read_body(receive) or b"{}")
        model, messages = str(body.get("model", "")), body.get("messages") or []
        user = next((str(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"), "")
        try:
            result = self.answers.complete(model, user)
        except KeyError:
            await send_json(send, 404, {"error": {"message": f"nothing recorded for {model!r} on this prompt",
                                                  "type": "invalid_request_error"}})
            return
        await send_json(send, 200, completion(model, result))


def completion(model: str, result: CompletionOutcome) -> dict[str, Any]:
    """An OpenAI chat.completion body carrying `result`'s text and token counts."""
    usage = {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
             "total_tokens": result.prompt_tokens + result.completion_tokens}
    return {"id": f"chatcmpl-replay-{time.monotonic_ns()}", "object": "chat.completion", "created": int(time.time()),
            "model": model, "usage": usage,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": result.text}}]}
