"""A litellm custom provider, `local/<name>`, serving GGUF models in-process."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import litellm
from litellm import CustomLLM
from litellm.types.utils import GenericStreamingChunk, ModelResponse

from gateway.local_models import registry

PROVIDER = "local"
_SAMPLING_KEYS = ("max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "seed")


def _params(optional_params: dict[str, Any]) -> dict[str, Any]:
    params = {k: optional_params[k] for k in _SAMPLING_KEYS if optional_params.get(k) is not None}
    if "max_completion_tokens" in params:
        params["max_tokens"] = params.pop("max_completion_tokens")
    return params


def _model_name(model: str) -> str:
    return model.split("/", 1)[1] if model.startswith(PROVIDER + "/") else model


class LocalProvider(CustomLLM):
    def _model(self, model: str, litellm_params: dict[str, Any] | None, optional_params: dict[str, Any]) -> Any:
        model_path = optional_params.pop("model_path", None) or (litellm_params or {}).get("model_path")
        parallel = int(optional_params.pop("parallel", 1) or 1)
        return registry.get(_model_name(model), model_path=model_path, parallel=parallel)

    async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> ModelResponse:  # type: ignore[override]
        optional_params: dict[str, Any] = dict(kwargs.get("optional_params") or {})
        local = self._model(model, kwargs.get("litellm_params"), optional_params)
        result = await local.generate(messages, _params(optional_params))
        return ModelResponse(
            id=f"chatcmpl-{uuid.uuid4().hex}",
            created=int(time.time()),
            model=model,
            object="chat.completion",
            choices=[
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.text},
                    "finish_reason": result.finish_reason,
                }
            ],
            usage={
                "prompt_tokens": result.prompt_tokens,
                "completion_tokens": result.completion_tokens,
                "total_tokens": result.prompt_tokens + result.completion_tokens,
            },
        )

    async def astreaming(self, model: str, messages: list, *args: Any, **kwargs: Any) -> AsyncIterator[GenericStreamingChunk]:  # type: ignore[override]
        optional_params: dict[str, Any] = dict(kwargs.get("optional_params") or {})
        local = self._model(model, kwargs.get("litellm_params"), optional_params)
        async for piece in local.stream(messages, _params(optional_params)):
            finished = piece.finish_reason is not None
            yield GenericStreamingChunk(
                text=piece.text,
                tool_use=None,
                is_finished=finished,
                finish_reason=piece.finish_reason or "",
                usage=(
                    {
                        "prompt_tokens": piece.prompt_tokens,
                        "completion_tokens": piece.completion_tokens,
                        "total_tokens": piece.prompt_tokens + piece.completion_tokens,
                    }
                    if finished
                    else None
                ),
                index=0,
            )


_provider = LocalProvider()


def register_local_provider() -> None:
    entries = [e for e in (litellm.custom_provider_map or []) if e.get("provider") != PROVIDER]
    entries.append({"provider": PROVIDER, "custom_handler": _provider})
    litellm.custom_provider_map = entries
    # litellm reads the map into its provider list lazily; this call makes the change visible.
    from litellm.utils import custom_llm_setup

    custom_llm_setup()
