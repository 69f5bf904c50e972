"""The one protocol every way of reaching a model implements."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..types import Capabilities, Completion, GenerationParams, Message, StreamChunk


@runtime_checkable
class Backend(Protocol):
    """A chat model. Implementations never block the event loop.

    `capabilities` declares what it can do beyond these methods (see types.Capabilities);
    callers read it instead of probing the implementation. `load` readies the model before
    serving (idempotent; nothing to do for a remote model)."""

    name: str
    capabilities: Capabilities

    async def load(self) -> None:
        ...

    async def complete(self, messages: Sequence[Message], params: GenerationParams) -> Completion:
        ...

    def stream(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> AsyncIterator[StreamChunk]:
        ...

    async def aclose(self) -> None:
        ...


@runtime_checkable
class HiddenStateBackend(Backend, Protocol):
    """A backend that can also return the final hidden state of a text's tokens (for probes
    and retrieval decoding). `last_token=False` averages over tokens instead."""

    async def hidden_states(
        self, texts: Sequence[str], *, chat: bool = False, last_token: bool = True
    ) -> list[list[float]]:
        ...


@runtime_checkable
class TokenStepper(Protocol):
    """A model one token at a time: what a backend with `Capabilities.token_steps` gives from
    `token_stepper()`, and what the in-process detoxified decoding loop drives. Arrays are
    numpy: logits [vocab], hidden [n_embd] (the final normalised state of the last token).
    Calls run on `executor`, the thread that owns the model's state."""

    executor: Executor
    stop_strings: list[str]  # the chat template's end-of-turn strings
    model_path: Path

    @property
    def eos(self) -> int: ...

    @property
    def n_ctx(self) -> int: ...

    @property
    def n_embd(self) -> int: ...

    @property
    def vocab_size(self) -> int: ...

    def token_text(self, token: int) -> str: ...

    def render(self, messages: Sequence[Message]) -> str: ...

    def chat_tokens(self, messages: Sequence[Message]) -> list[int]:
        """The chat prompt as tokens: each message's content tokenized as plain text, control
        tokens only from the chat template (a client cannot write a turn boundary)."""
        ...

    def tokenize(self, text: str, *, special: bool = False) -> list[int]: ...

    def detokenize(self, tokens: Sequence[int]) -> bytes: ...

    def prefill(self, tokens: Sequence[int]) -> tuple[Any, Any]: ...

    def advance(self, token: int, position: int) -> tuple[Any, Any]: ...

    def rewind(self, keep: int) -> None: ...


@runtime_checkable
class TokenStepBackend(Backend, Protocol):
    def token_stepper(self) -> TokenStepper: ...
