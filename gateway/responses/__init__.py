"""The OpenAI Responses API (`POST /v1/responses`) over the one pipeline: requests are translated
into chat completions, answers and streams back into Response objects and typed events."""
