"""Token counting through litellm, with one tokenizer for every model.

Public outcome sets rarely carry token counts. We count them with
`litellm.token_counter` using its default tiktoken encoding for *every* model:
per-vendor tokenizers would need network downloads, and a single count keeps
the cost model simple to state (tokens x per-token price).
"""

from __future__ import annotations

from functools import lru_cache

DEFAULT_COMPLETION_TOKENS = 256
_COUNT_MODEL = "gpt-4"  # selects litellm's tiktoken (cl100k_base) tokenizer


@lru_cache(maxsize=200_000)
def count_tokens(text: str) -> int:
    """Number of tokens in `text` by litellm's token counter."""
    # Imported lazily: it is slow to import. Its remote price map stays off because every entry
    # point applies contracts.environment's defaults first; prices come from our config.
    import litellm

    return int(litellm.token_counter(model=_COUNT_MODEL, text=text))
