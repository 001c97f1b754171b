"""Convert Qwen2.5-Math's `math_cot_100.jsonl` (8 samples/problem) to the replay format.

The source has extracted answers (`pred`), their correctness (`score`), reward
scores (`pred_score`) and the solution texts (`code`), but no token counts.
Tokens are counted with **tiktoken `cl100k_base`**, loaded from the copy
bundled inside litellm (`litellm/litellm_core_utils/tokenizers`), so it works
offline. It is not Qwen's own tokenizer: counts are a consistent proxy for
comparing strategies, not Qwen's billing. Prompt tokens follow OpenAI's chat
framing: each message costs its content plus 3 tokens, plus 3 to prime the reply.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .replay import ReplayProblem, ReplaySample, write_replay

TOKENIZER = "tiktoken cl100k_base (bundled with litellm)"


def load_cl100k() -> Any:
    """cl100k_base from litellm's bundled cache, without importing litellm
    (which takes seconds and is not needed to count tokens)."""
    import tiktoken

    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("litellm is not installed: it ships the offline cl100k_base file")
    bundled = Path(list(spec.submodule_search_locations)[0]) / "litellm_core_utils" / "tokenizers"
    previous = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(bundled)
    try:
        return tiktoken.get_encoding("cl100k_base")
    finally:
        if previous is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = previous


def chat_prompt_tokens(enc: Any, messages: list[dict[str, str]]) -> int:
    return sum(len(enc.encode(m["content"], disallowed_special=())) + 3 for m in messages) + 3


def convert_math_cot(rows: Iterator[dict[str, Any]], *, with_text: bool = True) -> Iterator[ReplayProblem]:
    enc = load_cl100k()
    for row in rows:
        messages = [{"role": "system", "content": row.get("system") or ""}, {"role": "user", "content": row["question"]}]
        prompt_tokens = chat_prompt_tokens(enc, messages)
        texts = row["code"]
        samples = [
            ReplaySample(
                text=text if with_text else None,
                answer=pred,
                correct=bool(ok),
                prompt_tokens=prompt_tokens,
                completion_tokens=len(enc.encode(text, disallowed_special=())),
                score=float(rs[0]) if isinstance(rs, list) else float(rs),
            )
            for text, pred, ok, rs in zip(texts, row["pred"], row["score"], row["pred_score"], strict=True)
        ]
        yield ReplayProblem(id=str(row["idx"]), prompt=row["question"], gold=str(row["gt"]), samples=samples)


def convert_file(src: str | Path, dst: str | Path, *, with_text: bool = True) -> int:
    with open(src) as f:
        rows = (json.loads(line) for line in f if line.strip())
        return write_replay(convert_math_cot(rows, with_text=with_text), dst)
