"""OpenAI wire format: request and response bodies of /v1/chat/completions."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import InvalidRequestError
from ..types import GenerationParams, Message, Role


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class WireMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    def to_message(self) -> Message:
        if self.role == "tool":
            raise InvalidRequestError("tool messages are not supported by specguard yet.")
        if isinstance(self.content, list):
            parts = []
            for part in self.content:
                if part.type != "text" or part.text is None:
                    raise InvalidRequestError(
                        f"content part type {part.type!r} is not supported; send text parts."
                    )
                parts.append(part.text)
            text = "\n".join(parts)
        else:
            text = self.content or ""
        role = Role.SYSTEM if self.role == "developer" else Role(self.role)
        return Message(role=role, content=text)


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    # Unknown fields are ignored (OpenAI SDKs add new ones often); options we cannot honour
    # are rejected explicitly below instead of being silently dropped.
    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[WireMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, max_length=256)
    n: int = 1
    tools: list[Any] | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, v: int) -> int:
        if v != 1:
            raise ValueError("only n=1 is supported")
        return v

    @field_validator("tools")
    @classmethod
    def _no_tools(cls, v):
        if v:
            raise ValueError("tool calling is not supported by specguard yet")
        return v

    def params(self) -> GenerationParams:
        """What the client asked for; the runtime applies the policy's ceilings (max_tokens is
        set only when the client set it: the policy's value is the default)."""
        asked: dict[str, Any] = {
            "temperature": self.temperature if self.temperature is not None else 0.0,
            "top_p": self.top_p if self.top_p is not None else 1.0,
            "stop": [self.stop] if isinstance(self.stop, str) else list(self.stop or []),
            "seed": self.seed,
        }
        max_tokens = self.max_completion_tokens or self.max_tokens
        if max_tokens is not None:
            asked["max_tokens"] = max_tokens
        return GenerationParams(**asked)


def completion_body(*, request_id: str, model: str, answer: str, finish_reason: str,
                    prompt_tokens: int, completion_tokens: int, report: dict) -> dict:
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "specguard": report,
    }


def chunk_body(*, request_id: str, model: str, created: int, delta: dict,
               finish_reason: str | None = None, **extra: Any) -> dict:
    body = {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
    }
    body.update(extra)
    return body


def error_body(message: str, *, type_: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
