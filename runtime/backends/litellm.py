"""Any API model through litellm: hosted APIs, a vLLM server (`hosted_vllm/<model>`), a
llama.cpp server (`openai/<model>` with api_base), Ollama (`ollama/<model>`)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ..errors import BackendError, BackendTimeoutError, ConfigError, require
from ..types import Capabilities, Completion, GenerationParams, Message, StreamChunk, TokenLogprob, Usage

# litellm fetches a model cost map from the internet at import unless told not to.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


class LiteLLMBackend:
    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        num_retries: int = 2,
        constrained_output: bool | None = None,
        schema_style: str = "json_schema",
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.name = f"litellm:{model}"
        self.api_base = api_base
        self.api_key = api_key
        self.timeout = timeout
        self.num_retries = num_retries
        self.extra_body = extra_body or {}
        # How a JSON schema is asked for: "json_schema" (OpenAI, vLLM, llama.cpp's llama-server)
        # or "json_object" with a "schema" key (llama-cpp-python's server).
        if schema_style not in ("json_schema", "json_object"):
            raise ConfigError(f"schema_style must be json_schema or json_object, not {schema_style!r}.")
        self.schema_style = schema_style
        # Servers speaking the OpenAI protocol accept a JSON-schema response_format; vLLM and
        # llama.cpp servers enforce it with guided decoding / grammars.
        if constrained_output is None:
            constrained_output = model.split("/")[0] in {"hosted_vllm", "openai", "ollama", "ollama_chat"}
        self.capabilities = Capabilities(
            streaming=True, logprobs=True, constrained_output=constrained_output, hidden_states=False
        )

    def _kwargs(self, messages: Sequence[Message], params: GenerationParams) -> dict[str, Any]:
        kw: dict[str, Any] = dict(
            model=self.model,
            messages=[m.model_dump(mode="json") for m in messages],
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            timeout=self.timeout,
            num_retries=self.num_retries,
        )
        if params.stop:
            kw["stop"] = list(params.stop)
        if params.seed is not None:
            kw["seed"] = params.seed
        if params.logprobs:
            kw["logprobs"] = True
            if params.top_logprobs:
                kw["top_logprobs"] = params.top_logprobs
        if params.json_schema is not None:
            if self.schema_style == "json_object":
                kw["response_format"] = {"type": "json_object", "schema": params.json_schema}
            else:
                kw["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "answer", "schema": params.json_schema, "strict": True},
                }
        if self.api_base:
            kw["api_base"] = self.api_base
        if self.api_key:
            kw["api_key"] = self.api_key
        if self.extra_body:
            kw["extra_body"] = self.extra_body
        return kw

    async def complete(self, messages: Sequence[Message], params: GenerationParams) -> Completion:
        litellm = require("litellm", "litellm")
        try:
            resp = await litellm.acompletion(**self._kwargs(messages, params))
        except Exception as exc:  # litellm raises its own tree; map it onto ours
            raise _map_error(exc, litellm) from exc
        try:
            choice = resp.choices[0]
            usage = getattr(resp, "usage", None)
            return Completion(
                text=choice.message.content or "",
                finish_reason=choice.finish_reason or "stop",
                usage=Usage(
                    prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                    completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
                ),
                logprobs=_logprobs(getattr(choice, "logprobs", None)),
                model=self.name,
            )
        except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
            raise BackendError(f"upstream model answered without a usable choice "
                               f"({type(exc).__name__}).") from exc

    async def stream(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> AsyncIterator[StreamChunk]:
        litellm = require("litellm", "litellm")
        kw = self._kwargs(messages, params)
        kw["stream"] = True
        kw["stream_options"] = {"include_usage": True}
        try:
            resp = await litellm.acompletion(**kw)
            usage = None
            finish = None
            async for chunk in resp:
                if getattr(chunk, "usage", None):
                    usage = Usage(
                        prompt_tokens=chunk.usage.prompt_tokens or 0,
                        completion_tokens=chunk.usage.completion_tokens or 0,
                    )
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                text = getattr(choice.delta, "content", None) or ""
                if text:
                    yield StreamChunk(text=text)
                if choice.finish_reason:
                    finish = choice.finish_reason
        except Exception as exc:
            raise _map_error(exc, litellm) from exc
        yield StreamChunk(finish_reason=finish or "stop", usage=usage or Usage())

    async def load(self) -> None:
        """The model is elsewhere; litellm itself is imported here, on a thread. Its first
        import takes seconds (much more on a loaded machine) and, left to the first request,
        would run on the event loop and stall every request in flight."""
        await asyncio.to_thread(require, "litellm", "litellm")

    async def aclose(self) -> None:
        return None


def _logprobs(raw) -> list[TokenLogprob] | None:
    content = getattr(raw, "content", None) if raw is not None else None
    if not content:
        return None
    return [
        TokenLogprob(
            token=item.token,
            logprob=item.logprob,
            top={t.token: t.logprob for t in (getattr(item, "top_logprobs", None) or [])},
        )
        for item in content
    ]


def _map_error(exc: Exception, litellm) -> BackendError:
    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, litellm.exceptions.Timeout):
        return BackendTimeoutError(f"{type(exc).__name__}: the upstream model timed out.")
    return BackendError(f"upstream model failed: {type(exc).__name__}: {exc}")
