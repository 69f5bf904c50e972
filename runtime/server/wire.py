"""OpenAI wire format: request and response bodies of /v1/chat/completions."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..errors import InvalidRequestError
from ..types import MAX_STOP_CHARS, MAX_STOPS, MAX_TOKENS, GenerationParams, Message, Role

SEED_BOUND = 2**63  # seeds are signed 64-bit integers, as OpenAI's


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
        return Message(role=role, content=checked_text(text, f"messages ({self.role})"))


def checked_text(text: str, where: str) -> str:
    """`text` if it is valid Unicode; JSON can carry a lone surrogate (\\ud800), which no
    model or tokenizer can encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequestError(
            f"{where}: the text has an unpaired surrogate at character {exc.start}.",
            hint="Send valid UTF-16 in JSON escapes (pair every \\ud800-\\udbff with a low "
                 "surrogate) or plain UTF-8.") from None
    return text


class StreamOptions(BaseModel):
    include_usage: bool = False


# Options specguard cannot honour, and the values of them that ask for nothing (what SDKs send
# by default); any other value is rejected with a 400 instead of being silently dropped.
_UNSUPPORTED: dict[str, tuple[Any, ...]] = {
    "tools": (None, []),
    "tool_choice": (None, "none", "auto"),
    "parallel_tool_calls": (None, True, False),
    "functions": (None, []),
    "function_call": (None, "none", "auto"),
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "logit_bias": (None, {}),
    "response_format": (None, {"type": "text"}),
    "audio": (None,),
    "modalities": (None, ["text"]),
    "prediction": (None,),
}


class ChatCompletionRequest(BaseModel):
    # Unknown fields are ignored (OpenAI SDKs add new ones often); options we cannot honour
    # are rejected explicitly below instead of being silently dropped.
    model_config = ConfigDict(extra="allow")

    model: str = Field(max_length=256)
    messages: list[WireMessage] = Field(min_length=1, max_length=4096)
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-SEED_BOUND, lt=SEED_BOUND)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, max_length=256)
    n: int = 1

    @field_validator("stop")
    @classmethod
    def _bounded_stops(cls, v):
        stops = [v] if isinstance(v, str) else list(v or [])
        if len(stops) > MAX_STOPS:
            raise ValueError(f"at most {MAX_STOPS} stop sequences")
        if any(not s or len(s) > MAX_STOP_CHARS for s in stops):
            raise ValueError(f"each stop sequence must be 1-{MAX_STOP_CHARS} characters")
        return v

    @model_validator(mode="after")
    def _unsupported(self) -> ChatCompletionRequest:
        extra = self.model_extra or {}
        for name, harmless in _UNSUPPORTED.items():
            if name in extra and extra[name] not in harmless:
                raise InvalidRequestError(
                    f"{name} is not supported by specguard.",
                    hint=f"Leave {name} out of the request (a guarded answer is plain text).")
        return self

    @field_validator("n")
    @classmethod
    def _one_choice(cls, v: int) -> int:
        if v != 1:
            raise ValueError("only n=1 is supported")
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
