"""Token counting with litellm's counter (tiktoken-based, bundled offline)."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@lru_cache(maxsize=1)
def _litellm() -> Any:
    import litellm

    return litellm


def count_message_tokens(model: str, messages: list[dict[str, Any]]) -> int:
    try:
        return int(_litellm().token_counter(model=model, messages=messages))
    except Exception:  # unusual content parts: fall back to counting the text we can see
        text = " ".join(str(m.get("content") or "") for m in messages)
        return count_text_tokens(model, text) + 4 * len(messages)


def count_text_tokens(model: str, text: str) -> int:
    if not text:
        return 0
    return int(_litellm().token_counter(model=model, text=text))
