"""The one protocol every way of reaching a model implements."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol, runtime_checkable

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
