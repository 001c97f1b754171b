"""The prompt text the router judges and the strategies quote: one reading of the messages."""

from __future__ import annotations

from contracts.prompts import conversation_text, prompt_text

QUESTION = "Which is a prime?"
OPTIONS = "A) 4\nB) 6\nC) 7"


def test_last_user_turn_with_parts_joined_by_newlines() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "an earlier question"},
        {"role": "assistant", "content": "an earlier answer"},
        {"role": "user", "content": [{"type": "text", "text": QUESTION},
                                     {"type": "image_url", "image_url": {"url": "data:,"}},
                                     {"type": "text", "text": OPTIONS}]},
    ]
    # The options stay on their own lines, as in the router's training prompts; the image adds nothing.
    assert prompt_text(messages) == f"{QUESTION}\n{OPTIONS}"


def test_plain_string_and_missing_turns() -> None:
    assert prompt_text([{"role": "user", "content": QUESTION}]) == QUESTION
    assert prompt_text([{"role": "user", "content": None}]) == ""
    assert prompt_text([{"role": "system", "content": "only a system turn"}]) == ""
    assert prompt_text([]) == ""


def test_gateway_and_strategies_read_the_same_function() -> None:
    import gateway.pipeline.plan as plan
    import gateway.routing as routing
    import strategies.common as common

    assert routing.prompt_text is plan.prompt_text is prompt_text
    assert not hasattr(common, "user_prompt")  # the strategies' copy is gone


def test_conversation_text_skips_system_and_reads_parts() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": QUESTION}]},
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "user", "content": "and why?"},
    ]
    assert conversation_text(messages) == f"{QUESTION}\n\nand why?"
