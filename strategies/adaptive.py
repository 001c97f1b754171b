"""`adaptive` (the default): size test-time compute per prompt, wave by wave.

Plan, from the router's difficulty (predicted P(success) of the routed model,
or None), the ledger balance and the per-request cap:

* predicted easy (P >= `easy_single_threshold`): one `single` call -- most of
  the savings come from not sampling easy prompts at all;
* predicted hopeless for the routed model (P < `hopeless_threshold`) with a
  stronger model configured: one call to the strong model, since votes over
  mostly-wrong samples rarely help;
* otherwise: draw samples in waves (`first_wave`, then `wave` at a time, up to
  N) and after each wave ask the stopping policy whether more samples are worth
  their cost (decisive vote, or scattered votes that will not converge); with a
  verifier (`selector: verifier`), stop at the first sample that passes. A
  fitted value policy (`strategies.value_policy`) also weighs each sample's
  vote by its reliability (worked arithmetic that checks out, length, answers
  that repeat a prompt number) and reads the prompt for its own difficulty
  estimate; adaptive then answers with the weighted vote.

Each wave is reserved on its own and settled as soon as it returns, so an early
stop never holds budget. With a `judge` or `reward` selector, each wave's
reservation also holds back the selection step's worst case over the samples
drawn so far (kept open until the next wave), so sampling never spends the
money that step needs: a wave that would leave too little is not drawn. Under a tight budget it degrades -- fewer samples,
then a single call on the cheap model -- and raises `InsufficientBudget` only
when not even that fits. If the budget runs out between waves, it answers with
the best vote so far and flags `budget_exhausted`.
"""

from __future__ import annotations

import math

from contracts.prompts import prompt_text

from .base import Completion, Message, StrategyError, StrategyInfo, StrategyResult
from .common import finish, insufficient
from .context import RunContext
from .policy import ConsistencyPolicy, StoppingPolicy, checkpoints
from .selectors import Selection, run_verifier, select, selection_cost
from .single import run_single
from .votes import answer_key, representative, tally

DEFAULT_MAX_N = 8


def default_policy(ctx: RunContext, max_n: int) -> StoppingPolicy:
    return ConsistencyPolicy(max_n=max_n, schedule=checkpoints(ctx.spec.first_wave, ctx.spec.wave, max_n))


async def run_adaptive(messages: list[Message], ctx: RunContext) -> StrategyResult:
    spec, model = ctx.spec, ctx.model
    policy = ctx.policy
    requested = spec.max_n(policy.max_n if policy is not None else DEFAULT_MAX_N)
    p = ctx.difficulty

    if p is not None and p >= spec.easy_single_threshold:
        return await _single(messages, ctx, model, "adaptive: predicted easy, single call")
    if p is not None and p < spec.hopeless_threshold and spec.strong_model and spec.strong_model != model:
        return await _single(messages, ctx, spec.strong_model, "adaptive: predicted too hard, escalated to strong model")

    available = await ctx.meter.available_usd()
    affordable = _affordable(messages, ctx, model, requested, available)
    if affordable < 1:
        cheap = spec.cheap_model
        if cheap and cheap != model and ctx.estimate(messages, 1, model=cheap) <= available:
            return await _single(messages, ctx, cheap, "adaptive: budget fits only the cheap model", degraded=True)
        raise await insufficient(ctx, messages, model)
    max_n = min(requested, affordable)
    if max_n == 1:
        return await _single(messages, ctx, model, "adaptive: budget fits one sample", degraded=requested > 1)

    if policy is not None:
        schedule = [k for k in policy.schedule if k < max_n] + [max_n]
    else:
        policy = default_policy(ctx, max_n)
        schedule = policy.schedule
    # The per-request hooks (strategies.stopping) return copies: the policy object is shared by concurrent requests.
    if p is not None:
        policy = policy.with_difficulty(p)  # tables split by predicted difficulty read it
    prompt = prompt_text(messages)
    policy = policy.for_prompt(prompt)  # a value policy computes its own prompt difficulty
    if spec.stop_threshold is not None:
        policy = policy.with_stop_threshold(spec.stop_threshold)

    completions: list[Completion] = []
    exhausted = False
    passed: int | None = None
    if spec.selector == "verifier" and ctx.verifier is None:
        raise StrategyError("selector 'verifier' needs a verifier configured for this tenant")
    use_verifier = spec.selector == "verifier"
    for target in schedule:
        size = target - len(completions)
        if size <= 0:
            continue
        await ctx.meter.close()  # settle the previous wave before reserving the next
        got = await ctx.meter.reserve_largest(lambda k: _wave_cost(messages, ctx, model, len(completions), k), size)
        if got is None:
            if not completions:
                raise await insufficient(ctx, messages, model)
            exhausted = True
            break
        wave = await ctx.meter.generate(messages, got, model=model, role="sample", **ctx.call_params(sampling=True))
        completions.extend(wave)
        if _selection_cost(messages, ctx, len(completions)) <= 0:
            await ctx.meter.close()  # nothing held back: an early stop holds nothing
        # Otherwise the hold stays open until the next wave: if sampling stops
        # here, the judge/reward step runs on the money held back for it.
        await ctx.meter.emit_wave(drawn=len(completions))
        if use_verifier:
            for i in range(len(completions) - len(wave), len(completions)):
                if await run_verifier(ctx, messages, completions[i]):
                    passed = i
                    break
            if passed is not None:
                break
        if got < size:
            exhausted = True
            break
        keys = [answer_key(c, spec.extractor) for c in completions]
        weights = _vote_weights(policy, keys, completions, prompt)
        if policy.should_stop(tally(keys, [c.score for c in completions], weights), max_n):
            break

    keys = [answer_key(c, spec.extractor) for c in completions]
    picked = await _pick(messages, completions, ctx, passed, _vote_weights(policy, keys, completions, prompt))
    chosen = completions[picked.index]
    degraded = max_n < requested or exhausted
    info = StrategyInfo(
        "adaptive", len(completions), degraded=degraded,
        reason=f"budget fits n<={max_n} of {requested}" if max_n < requested else None,
    )
    return await finish(
        ctx, text=chosen.text, info=info, chosen=chosen, answer=picked.answer, exhausted=exhausted,
        meta={"selector": picked.method, "max_n": max_n, **picked.detail},
    )


def _vote_weights(
    policy: StoppingPolicy, keys: list[str | None], completions: list[Completion], prompt: str
) -> list[float] | None:
    """Per-sample vote weights when the policy has them (a fitted value policy
    weighs samples by reliability; see strategies/reliability.py), else None."""
    return policy.vote_weights(keys, [c.completion_tokens for c in completions], prompt, [c.text for c in completions])


async def _pick(
    messages: list[Message], completions: list[Completion], ctx: RunContext, passed: int | None,
    weights: list[float] | None = None,
) -> Selection:
    if passed is not None:
        return Selection(passed, answer_key(completions[passed], ctx.spec.extractor), "verifier")
    if ctx.spec.selector in ("reward", "judge") and len(completions) > 1:
        need = _selection_cost(messages, ctx, len(completions))
        if need > 0 and not ctx.meter.fits(need):
            # The last wave's hold was settled before a refused reserve for the
            # next one: take the held-back amount again. Only a concurrent
            # request can have taken it meanwhile; then the selector falls
            # back to the vote and says so.
            await ctx.meter.close()
            await ctx.meter.reserve(need)
        return await select(ctx.spec.selector, messages, completions, ctx)
    return _vote(completions, ctx, weights)


def _selection_cost(messages: list[Message], ctx: RunContext, drawn: int) -> float:
    return selection_cost(ctx, messages, drawn, ctx.spec.selector)


def _wave_cost(messages: list[Message], ctx: RunContext, model: str | None, drawn: int, k: int) -> float:
    """A wave of k more samples, plus the selection step's worst case over all
    drawn + k: a wave is drawn only if the judge/reward step still fits after it."""
    return ctx.estimate(messages, k, model=model) + _selection_cost(messages, ctx, drawn + k)


def _affordable(
    messages: list[Message], ctx: RunContext, model: str | None, requested: int, available: float
) -> int:
    """The most samples (<= requested) that fit `available` with the selection step over them."""
    if math.isinf(available):
        return requested
    per_sample = ctx.estimate(messages, 1, model=model)
    k = requested
    while k >= 1 and k * per_sample + _selection_cost(messages, ctx, k) > available + 1e-12:
        k -= 1
    return k


def _vote(completions: list[Completion], ctx: RunContext, weights: list[float] | None = None) -> Selection:
    keys = [answer_key(c, ctx.spec.extractor) for c in completions]
    t = tally(keys, [c.score for c in completions], weights)
    if t.leader is None:
        return Selection(0, None, "majority")
    return Selection(representative(completions, keys, t.leader), t.leader, "majority", {"votes": dict(t.counts)})


async def _single(
    messages: list[Message], ctx: RunContext, model: str | None, reason: str, degraded: bool = False
) -> StrategyResult:
    result = await run_single(messages, ctx, model=model, reason=reason, degraded=degraded)
    return result
