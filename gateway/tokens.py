"""Token counting: litellm's counter in general, a direct tiktoken path for OpenAI-style models.

litellm.token_counter resolves the model, picks a tokenizer and walks the messages on every
call; for OpenAI-compatible models that is the same cl100k count we can do directly in a few
microseconds. The count only sizes a reservation (with a 10% margin); settlement always uses
the upstream's reported usage.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

TOKENS_PER_MESSAGE = 3  # OpenAI's chat format overhead per message, plus 3 to prime the reply
DIRECT_PREFIXES = ("openai/",)


@lru_cache(maxsize=1)
def _litellm() -> Any:
    import litellm

    return litellm


@lru_cache(maxsize=1)
def _cl100k() -> Any:
    _litellm()
    # litellm's default encoding is cl100k_base, loaded from the file litellm bundles (offline).
    from litellm.litellm_core_utils.default_encoding import encoding

    return encoding


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def count_message_tokens(model: str, messages: list[dict[str, Any]]) -> int:
    if model.startswith(DIRECT_PREFIXES):
        encode = _cl100k().encode_ordinary
        total = TOKENS_PER_MESSAGE
        for message in messages:
            total += TOKENS_PER_MESSAGE + len(encode(str(message.get("role", "")))) + len(encode(_text(message.get("content"))))
            if message.get("name"):
                total += 1 + len(encode(str(message["name"])))
            if message.get("tool_calls"):
                total += len(encode(str(message["tool_calls"])))
        return total
    try:
        return int(_litellm().token_counter(model=model, messages=messages))
    except Exception:  # unusual content parts: fall back to counting the text we can see
        text = " ".join(_text(m.get("content")) for m in messages)
        return count_text_tokens(model, text) + 4 * len(messages)


def count_text_tokens(model: str, text: str) -> int:
    if not text:
        return 0
    if model.startswith(DIRECT_PREFIXES):
        return len(_cl100k().encode_ordinary(text))
    return int(_litellm().token_counter(model=model, text=text))
