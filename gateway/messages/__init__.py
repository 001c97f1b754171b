"""The Anthropic Messages API (`POST /v1/messages`) over the one pipeline: requests are translated
into chat completions, answers, streams and errors back into Anthropic's shapes."""
