"""Live recording and evaluation over any Generator (the gateway supplies it).

* :func:`record` samples K completions per prompt and writes a replay file
  (answers extracted with the same extractors voting uses; `correct` graded
  against the prompt's gold answer when it has one).
* :func:`evaluate_live` runs any strategy -- refine and scale included -- on
  real models and grades the chosen answer against gold.

Prompts file: JSONL with `prompt` (or `question`, `problem`, MAWPS's `input`;
SVAMP's `Body` + `Question`; keys in any case), optional `id`/`idx` and `gold`
(or `answer`, MAWPS's `target`; GSM8K's `#### 42` tail is understood).
Recording appends problem by problem and can resume an interrupted run.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from contracts.answers import normalize_math

from ..base import Completion, Generator
from .budget import InMemoryBudget
from .evaluation import EvalResult
from ..extractors import get_extractor
from .replay import ReplayProblem, ReplaySample
from ..runner import run_strategy
from ..spec import TTCSpec
from ..votes import answer_key


@dataclass(frozen=True)
class Prompt:
    id: str
    prompt: str
    gold: str | None


def _gold_text(gold: object) -> str | None:
    if gold is None:
        return None
    if isinstance(gold, float) and gold.is_integer():
        return str(int(gold))  # SVAMP/MAWPS store 145.0 for 145
    text = str(gold)
    if "####" in text:
        text = text.split("####")[-1].strip()  # GSM8K: reasoning, then `#### 42`
    return text


def load_prompts(path: str | Path, limit: int | None = None, template: str | None = None) -> list[Prompt]:
    """Prompts from JSONL; keys are matched case-insensitively.

    Understands `prompt`/`question`/`problem`/`input` (MAWPS) for the text, SVAMP's
    `Body` + `Question` split, and `gold`/`answer`/`target` (MAWPS) for the gold answer.
    `template`, if given, wraps the text: `template.format(question=text)`.
    """
    out: list[Prompt] = []
    with open(path) as f:
        for i, line in enumerate(f):
            if not line.strip():
                continue
            row = {str(k).lower(): v for k, v in json.loads(line).items()}
            text = row.get("prompt") or row.get("question") or row.get("problem") or row.get("input")
            if not text:
                raise ValueError(f"{path}:{i + 1}: no 'prompt', 'question', 'problem' or 'input' field")
            text = str(text).strip()
            body = row.get("body")
            if body and "question" in row and str(body).strip() not in text:
                body = str(body).strip()
                # SVAMP splits the problem into a body and a question.
                text = f"{body}{'' if body.endswith(('.', '?', '!')) else '.'} {text}"
            if template:
                text = template.format(question=text)
            gold = next((row[k] for k in ("gold", "answer", "target") if row.get(k) is not None), None)
            pid = row.get("id", row.get("idx", i))
            out.append(Prompt(str(pid), text, _gold_text(gold)))
            if limit is not None and len(out) >= limit:
                break
    return out


def load_shots(path: str | Path) -> list[dict]:
    """Few-shot examples as chat turns, from JSONL rows `{"question", "answer"}`.

    Small chat models seem to follow worked examples better as earlier
    user/assistant turns than inlined in one message: SmolLM2-135M got 0 of 52
    samples right on the first 26 MAWPS problems with four examples inlined,
    and 4 of 20 on the first 20 single-op ones with the same examples as turns
    (different problems: a rough comparison, not a controlled one)."""
    turns: list[dict] = []
    with open(path) as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                turns += [{"role": "user", "content": row["question"]}, {"role": "assistant", "content": row["answer"]}]
    return turns


def _messages(p: Prompt, system: str | None, shots: Sequence[dict] | None) -> list[dict]:
    return ([{"role": "system", "content": system}] if system else []) + list(shots or []) + [
        {"role": "user", "content": p.prompt}]


def grade(answer: str | None, gold: str | None) -> bool | None:
    if gold is None:
        return None
    if answer is None:
        return False
    return normalize_math(answer) == normalize_math(gold)


async def _draw(generator: Generator, messages: list[dict], k: int, model: str | None, params: dict) -> list[Completion]:
    if k == 1 or generator.supports_n(model):
        return await generator.generate(messages, k, model=model, role="sample", **params)
    parts = await asyncio.gather(*(generator.generate(messages, 1, model=model, role="sample", **params)
                                   for _ in range(k)))
    return [c for p in parts for c in p]


def _recorded_ids(path: Path) -> set[str]:
    """Ids already in a (possibly partial) replay file; a torn last line is dropped."""
    if not path.exists():
        return set()
    ids, good = set(), []
    for line in path.read_text().splitlines():
        try:
            ids.add(ReplayProblem.model_validate_json(line).id)
            good.append(line)
        except ValueError:
            continue  # the run died mid-write: re-record that problem
    path.write_text("".join(g + "\n" for g in good))
    return ids


async def record(
    generator: Generator,
    prompts: Sequence[Prompt],
    samples: int,
    out_path: str | Path,
    *,
    model: str | None = None,
    extractor: str = "auto",
    params: dict | None = None,
    system: str | None = None,
    shots: Sequence[dict] | None = None,
    resume: bool = False,
    progress: Callable[[int, ReplayProblem], None] | None = None,
) -> int:
    """Record `samples` completions per prompt into a replay file.

    Each problem is appended (and flushed) as soon as its samples are in, so an
    interrupted run keeps what it recorded; with `resume=True` problems already
    in `out_path` are skipped. Returns the number of problems in the file.
    """
    params = {"temperature": 0.7, **(params or {})}
    extract = get_extractor(extractor)
    out = Path(out_path)
    done = _recorded_ids(out) if resume else set()
    count = len(done)
    with open(out, "a" if resume else "w") as f:
        for p in prompts:
            if p.id in done:
                continue
            messages = _messages(p, system, shots)
            completions = await _draw(generator, messages, samples, model, params)
            recs = []
            for c in completions:
                ans = extract(c.text)
                recs.append(ReplaySample(
                    text=c.text, answer=ans, correct=grade(ans, p.gold), prompt_tokens=c.prompt_tokens,
                    completion_tokens=c.completion_tokens, score=c.score,
                ))
            problem = ReplayProblem(id=p.id, prompt=p.prompt, gold=p.gold, samples=recs)
            f.write(json.dumps(problem.model_dump(exclude_none=True), ensure_ascii=False) + "\n")
            f.flush()
            count += 1
            done.add(p.id)
            if progress is not None:
                progress(count, problem)
    return count


async def evaluate_live(
    generator: Generator,
    prompts: Sequence[Prompt],
    spec: TTCSpec,
    *,
    model: str | None = None,
    params: dict | None = None,
    system: str | None = None,
    shots: Sequence[dict] | None = None,
    **strategy_kwargs: object,
) -> EvalResult:
    """One run per prompt (live sampling is its own randomness: seeds=1)."""
    res = EvalResult(spec.strategy, 1)
    for p in prompts:
        result = await run_strategy(
            _messages(p, system, shots), spec, generator=generator, budget=InMemoryBudget(),
            model=model, params=params, **strategy_kwargs,  # type: ignore[arg-type]
        )
        answer = result.answer if result.answer is not None else (
            answer_key(result.chosen, spec.extractor) if result.chosen else get_extractor(spec.extractor)(result.text)
        )
        ok = grade(answer, p.gold)
        res.correct.append([float(bool(ok))])
        res.tokens.append([float(result.usage.completion_tokens)])
        res.calls.append([float(len(result.calls))])
    return res

