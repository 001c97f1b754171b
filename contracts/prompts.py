"""The prompt's text, read from OpenAI-format chat messages.

The gateway routes on it, the router's difficulty prior reads it, and the strategies quote it
as "the problem": all three must see the same text for a request, or a prompt the router
judged is not the one the strategies solve.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

# A message is a JSON object, hence `object` values: this module checks each type it relies on.
# Content is a string, a list of parts (`{"type": "text", "text": ...}`, `image_url`, ...), or
# null (an assistant turn that only calls tools).
Message: TypeAlias = Mapping[str, object]

# Text parts are joined with a newline, not a space. Clients split a prompt into parts at
# block boundaries (a document, then the question; a question, then its options), and the
# router was trained on prompts whose blocks sit on their own lines: its text features count
# lines and find options at line starts (router/features/text.py). A space would glue those
# blocks into one line; the sentence embedder treats both alike, so the newline costs nothing.
PART_SEPARATOR = "\n"


def content_text(content: object) -> str:
    """The text of one message's content: its text parts joined; other parts (images) skipped."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return PART_SEPARATOR.join(
            text for part in content if isinstance(part, Mapping) and isinstance(text := part.get("text"), str))
    return ""


def prompt_text(messages: Sequence[Message]) -> str:
    """The last user turn's text: what the answer must address; "" when there is no user turn."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def conversation_text(messages: Sequence[Message]) -> str:
    """Every non-system turn's text, one turn per line: what a judge must read to grade an answer
    that may lean on earlier turns."""
    return "\n".join(content_text(m.get("content")) for m in messages if m.get("role") != "system")
