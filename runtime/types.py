"""The small set of types every part of specguard speaks: messages, generation settings,
completions, stream chunks and backend capabilities."""

from __future__ import annotations

from enum import StrEnum
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Role(StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"


class Message(BaseModel):
    model_config = ConfigDict(frozen=True)

    role: Role
    content: str


def system(text: str) -> Message:
    return Message(role=Role.SYSTEM, content=text)


def user(text: str) -> Message:
    return Message(role=Role.USER, content=text)


def assistant(text: str) -> Message:
    return Message(role=Role.ASSISTANT, content=text)


MAX_TOKENS = 32768  # the most tokens one generation may ask for
MAX_STOPS = 4  # stop sequences per generation (OpenAI's limit)
MAX_STOP_CHARS = 256


class GenerationParams(BaseModel):
    """What one generation asks of a backend. Unsupported options fail loudly in the backend."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int = Field(256, ge=1, le=MAX_TOKENS)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: list[str] = Field(default_factory=list, max_length=MAX_STOPS)
    seed: int | None = Field(None, ge=-(2**63), lt=2**63)
    logprobs: bool = False
    top_logprobs: int = Field(0, ge=0, le=20)
    # Constrained output: a JSON schema the answer must satisfy (backends translate it to a
    # grammar or a response_format); None means free text.
    json_schema: dict[str, Any] | None = None


class Usage(BaseModel):
    """Tokens one model call used (what a backend reports)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
        )


class Cost(Usage):
    """What some work cost in model calls and tokens. Every record that carries a cost (a
    step, a safety report, a spec update, a gate score) inherits these fields, and costs add
    up with `+` or `Cost.total(...)`, never field by field."""

    model_calls: int = 0

    @classmethod
    def of(cls, usage: Usage, calls: int = 1) -> Cost:
        """The cost of `calls` model calls that used `usage` tokens."""
        return cls(model_calls=calls, prompt_tokens=usage.prompt_tokens,
                   completion_tokens=usage.completion_tokens)

    @classmethod
    def total(cls, items: Iterable[Any]) -> Cost:
        """The sum of the costs of `items` (any objects with the three cost attributes)."""
        out = cls()
        for item in items:
            out = out + (item if isinstance(item, Cost) else cls.model_validate(item, from_attributes=True))
        return out

    def cost(self) -> Cost:
        """Only the cost fields of this record (a subclass carries more)."""
        return Cost(model_calls=self.model_calls, prompt_tokens=self.prompt_tokens,
                    completion_tokens=self.completion_tokens)

    def __add__(self, other: Usage) -> Cost:
        return Cost(
            model_calls=self.model_calls + (other.model_calls if isinstance(other, Cost) else 0),
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
        )


class TokenLogprob(BaseModel):
    token: str
    logprob: float
    top: dict[str, float] = Field(default_factory=dict)


class Completion(BaseModel):
    text: str
    finish_reason: str = "stop"
    usage: Usage = Field(default_factory=Usage)
    logprobs: list[TokenLogprob] | None = None
    model: str = ""


class StreamChunk(BaseModel):
    """One piece of a streamed answer. The last chunk carries finish_reason and usage."""

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None


class Capabilities(BaseModel):
    """What a backend can do beyond `complete` and `stream`, declared by the backend (callers
    read this, never probe the implementation):

    - logprobs: `GenerationParams(logprobs=True)` returns per-token log-probabilities;
    - constrained_output: `GenerationParams(json_schema=...)` is enforced while decoding;
    - hidden_states: `hidden_states(texts)` returns final hidden states (probes, retrieval);
    - token_steps: `token_stepper()` gives a public token-step interface (per step: base
      logits and the final hidden state), which detoxified decoding runs in this process.
    """

    model_config = ConfigDict(frozen=True)

    streaming: bool = True
    logprobs: bool = False
    constrained_output: bool = False
    hidden_states: bool = False
    token_steps: bool = False
