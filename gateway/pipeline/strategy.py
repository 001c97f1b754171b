"""The strategy executor: a test-time-compute strategy over the gateway's Generator and Budget.

Streams send keep-alive comments while the strategy works, and the chosen answer once known;
internal progress is never streamed as the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from strategies import InsufficientBudget, ProgressEvent, StrategyError, StrategyInfo, StrategyResult, TTCSpecError, run_strategy

from gateway.accounting import budget_error
from gateway.errors import GatewayError, internal_error, invalid_request
from gateway.ledger import BudgetExceeded
from gateway.pipeline.context import RequestContext
from gateway.pipeline.generator import AccountBudget, GatewayGenerator
from gateway.pipeline.plan import RequestPlan, StrategyPlan
from gateway.pipeline.respond import Answer
from gateway.upstream import Json, UpstreamError

log = logging.getLogger("ttc.strategy")

KEEPALIVE_EVERY_S = 5.0


def _pieces(text: str, size: int = 32) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


class StrategyExecutor:
    def __init__(self, ctx: RequestContext, plan: RequestPlan, strategy: StrategyPlan) -> None:
        self.ctx = ctx
        self.plan = plan
        self.strategy = strategy
        self.generator = GatewayGenerator(ctx.calls, plan.model, ctx.account)
        self.progress: asyncio.Queue[ProgressEvent] = asyncio.Queue()

    async def _on_progress(self, event: ProgressEvent) -> None:
        self.progress.put_nowait(event)

    async def _execute(self) -> StrategyResult:
        params = dict(self.plan.params)
        params.pop("n", None)
        state = self.ctx.state
        return await run_strategy(
            self.plan.messages, self.strategy.spec, generator=self.generator, budget=AccountBudget(self.ctx.account),
            model=None, difficulty=await self.strategy.prompt_difficulty(self.plan.messages), params=params, difficulty_fn=self.strategy.difficulty_fn,
            policy=state.strategy_policy, escalation=state.escalation_model, progress=self._on_progress,
        )

    def map_error(self, error: BaseException) -> GatewayError:
        if isinstance(error, GatewayError):
            return error
        if isinstance(error, InsufficientBudget):
            return budget_error(BudgetExceeded(window="request", scope="request", limit_usd=error.available_usd,
                                               remaining_usd=error.available_usd, requested_usd=error.needed_usd))
        if isinstance(error, (StrategyError, TTCSpecError)):
            return invalid_request(str(error), param="ttc")
        if isinstance(error, UpstreamError):
            return error.to_gateway_error(self.plan.model.name)
        if isinstance(error, Exception):
            log.error("strategy %s failed", self.strategy.spec.strategy, exc_info=error)
            return internal_error()
        raise error

    def served_model(self, result: StrategyResult) -> str:
        """The model whose answer was chosen: the planned one, unless every call fell back."""
        return result.chosen.model if result.chosen is not None else self.plan.model.name

    @staticmethod
    def report(result: StrategyResult) -> dict[str, Any]:
        report = dict(result.report)
        if result.budget_exhausted:
            report["budget_exhausted"] = True
            report["message"] = result.budget_message
        return report

    def observed(self, result: StrategyResult) -> None:
        self.ctx.response_text = result.text
        self.ctx.strategy_n = result.strategy.n
        self.ctx.degraded = result.strategy.degraded

    def body(self, result: StrategyResult) -> Json:
        return {
            "id": f"chatcmpl-{self.ctx.request_id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.served_model(result),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text},
                         "finish_reason": result.finish_reason or "stop"}],
        }

    async def complete(self) -> Answer:
        try:
            result = await self._execute()
        except BaseException as error:
            raise self.map_error(error) from None
        self.observed(result)
        return Answer(body=self.body(result), served_model=self.served_model(result),
                      remaining_usd=await self.ctx.account.remaining_usd(), strategy=result.strategy,
                      report=self.report(result))

    async def open_stream(self) -> StrategyStream:
        task = asyncio.ensure_future(self._execute())
        # Headers wait for the first sign of life: a budget or spec error before any call is
        # still a proper HTTP error, not a 200 stream that fails.
        getter = asyncio.ensure_future(self.progress.get())
        try:
            done, _ = await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # cancelled before the headers: stop the strategy; it settles itself
            getter.cancel()
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise
        if getter not in done:
            getter.cancel()
        if task in done and task.exception() is not None:
            raise self.map_error(task.exception())  # type: ignore[arg-type]
        return StrategyStream(self, task)


class StrategyStream:
    native = False

    def __init__(self, executor: StrategyExecutor, task: asyncio.Task[StrategyResult]) -> None:
        self.executor = executor
        self.task = task
        self.served_model = executor.plan.model.name
        self.strategy: StrategyInfo | None = None
        self.report: dict[str, Any] = {}
        self.final: Json | None = None
        self.failure: GatewayError | None = None
        self.settle = None  # the strategy settles its own holds before it returns

    async def chunks(self) -> AsyncIterator[Json | None]:
        task = self.task
        while not task.done():
            # wait, not wait_for: a failed strategy must end here as an error event, not raise.
            await asyncio.wait({task}, timeout=KEEPALIVE_EVERY_S)
            if not task.done():
                yield None
        error = task.exception()
        if error is not None:
            self.failure = self.executor.map_error(error)
            return
        result = task.result()
        self.executor.observed(result)
        self.served_model = self.executor.served_model(result)
        self.strategy = result.strategy
        self.report = self.executor.report(result)
        body = self.executor.body(result)
        base = {"id": body["id"], "object": "chat.completion.chunk", "created": body["created"], "model": body["model"]}
        yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
        for piece in _pieces(result.text):
            yield {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
        self.final = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": result.finish_reason or "stop"}]}

    async def close(self) -> None:
        if not self.task.done():
            # The client left: stop the strategy; its own cleanup settles what was spent.
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task
