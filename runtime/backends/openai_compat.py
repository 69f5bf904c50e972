"""A lean client for OpenAI-compatible servers (vLLM, llama.cpp server, TGI, Ollama's /v1):
one pooled aiohttp session, no translation layer. litellm reaches more providers; this is the
fast path when the upstream already speaks the OpenAI protocol. aiohttp rather than httpx: a
loopback round trip measured 0.45 ms against 1.09 ms (bench/proxy_overhead.py has the
end-to-end figures)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp

from ..errors import BackendError, BackendTimeoutError
from ..types import Capabilities, Completion, GenerationParams, Message, StreamChunk, TokenLogprob, Usage


class OpenAICompatBackend:
    capabilities = Capabilities(streaming=True, logprobs=True, constrained_output=True)

    def __init__(self, model: str, *, api_base: str, api_key: str | None = None,
                 timeout: float = 60.0, max_connections: int = 256,
                 extra_body: dict[str, Any] | None = None) -> None:
        self.model = model
        self.name = f"openai:{model}"
        self.extra_body = extra_body or {}
        self._headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._url = api_base.rstrip("/") + "/chat/completions"
        # `timeout` bounds each wait for the upstream (connecting, and every read: the first
        # byte of an answer, then each streamed chunk), not the whole answer, so a long stream
        # that keeps arriving is never cut; the server's request budget bounds the whole.
        self._timeout = aiohttp.ClientTimeout(total=None, connect=min(timeout, 10.0),
                                              sock_read=timeout)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use, inside the event loop that will use it.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=self._max_connections),
            )
        return self._session

    def _body(self, messages: Sequence[Message], params: GenerationParams, stream: bool) -> dict:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role.value, "content": m.content} for m in messages],
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stream": stream,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        if params.logprobs:
            body["logprobs"] = True
            if params.top_logprobs:
                body["top_logprobs"] = params.top_logprobs
        if params.json_schema is not None:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "answer", "schema": params.json_schema}}
        if stream:
            body["stream_options"] = {"include_usage": True}
        body.update(self.extra_body)
        return body

    async def _post(self, body: dict) -> aiohttp.ClientResponse:
        """The upstream's response (headers read). A pooled keep-alive connection that the
        upstream closed meanwhile fails before anything was answered (disconnected, or the
        request body could not be written): tried once more, on a new connection."""
        try:
            return await self._client().post(self._url, json=body)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            return await self._client().post(self._url, json=body)

    async def complete(self, messages: Sequence[Message], params: GenerationParams) -> Completion:
        try:
            async with await self._post(self._body(messages, params, False)) as r:
                if r.status != 200:
                    raise BackendError(f"{self.name} answered {r.status}: {(await r.text())[:500]}")
                data = await r.json(content_type=None)
        except (TimeoutError, asyncio.TimeoutError) as exc:
            raise BackendTimeoutError(f"{self.name} timed out.") from exc
        except aiohttp.ClientError as exc:
            raise BackendError(f"{self.name} is unreachable: {exc}") from exc
        except ValueError as exc:  # a body that is not JSON (JSONDecodeError, bad UTF-8)
            raise BackendError(f"{self.name} answered 200 with a body that is not JSON.") from exc
        try:
            choice = data["choices"][0]
            usage = data.get("usage") or {}
            return Completion(
                text=choice["message"].get("content") or "",
                finish_reason=choice.get("finish_reason") or "stop",
                usage=Usage(prompt_tokens=usage.get("prompt_tokens") or 0,
                            completion_tokens=usage.get("completion_tokens") or 0),
                logprobs=_logprobs(choice.get("logprobs")),
                model=self.name,
            )
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            raise BackendError(f"{self.name} answered 200 without a usable choice "
                               f"({type(exc).__name__}: {exc}).") from exc

    async def stream(self, messages: Sequence[Message], params: GenerationParams) -> AsyncIterator[StreamChunk]:
        usage = Usage()
        finish = "stop"
        try:
            async with await self._post(self._body(messages, params, True)) as r:
                if r.status != 200:
                    raise BackendError(f"{self.name} answered {r.status}: {(await r.text())[:500]}")
                async for raw in r.content:
                    line = raw.decode("utf-8", "replace").strip()
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        break
                    data = _event(self.name, payload)
                    if data.get("usage"):
                        usage = Usage(prompt_tokens=data["usage"].get("prompt_tokens") or 0,
                                      completion_tokens=data["usage"].get("completion_tokens") or 0)
                    for choice in data.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content") or ""
                        if text:
                            yield StreamChunk(text=text)
                        if choice.get("finish_reason"):
                            finish = choice["finish_reason"]
        except (TimeoutError, asyncio.TimeoutError) as exc:
            raise BackendTimeoutError(f"{self.name} timed out while streaming.") from exc
        except aiohttp.ClientError as exc:
            raise BackendError(f"{self.name} failed while streaming: {exc}") from exc
        except (AttributeError, TypeError, ValueError) as exc:  # well-formed JSON, wrong shape
            raise BackendError(f"{self.name} sent a stream event of the wrong shape "
                               f"({type(exc).__name__}).") from exc
        yield StreamChunk(finish_reason=finish, usage=usage)

    async def load(self) -> None:  # nothing to load: the model is elsewhere
        return None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def _event(name: str, payload: str) -> dict:
    """One server-sent event's JSON object; anything else is the upstream's failure."""
    try:
        data = json.loads(payload)
    except ValueError as exc:
        raise BackendError(f"{name} sent a stream event that is not JSON.") from exc
    if not isinstance(data, dict):
        raise BackendError(f"{name} sent a stream event that is not a JSON object.")
    return data


def _logprobs(raw: dict | None) -> list[TokenLogprob] | None:
    if not raw or not raw.get("content"):
        return None
    return [TokenLogprob(token=i["token"], logprob=i["logprob"],
                         top={t["token"]: t["logprob"] for t in i.get("top_logprobs") or []})
            for i in raw["content"]]
