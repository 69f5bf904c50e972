"""A scripted backend: answers from a list or a function, for deterministic tests of policies
and flows (the model is the outside world; this stands in for it, like dspy's DummyLM)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence

from ..types import Capabilities, Completion, GenerationParams, Message, StreamChunk, Usage

Script = Sequence[str] | Callable[[Sequence[Message], GenerationParams], str]


class ScriptedBackend:
    capabilities = Capabilities(streaming=True)

    def __init__(self, script: Script, *, name: str = "scripted") -> None:
        self.name = name
        self._script = script
        self._i = 0
        self.calls: list[list[Message]] = []

    def _next(self, messages: Sequence[Message], params: GenerationParams) -> str:
        self.calls.append(list(messages))
        if callable(self._script):
            return self._script(messages, params)
        text = self._script[self._i % len(self._script)]
        self._i += 1
        return text

    async def complete(self, messages: Sequence[Message], params: GenerationParams) -> Completion:
        text = self._next(messages, params)
        return Completion(
            text=text,
            usage=Usage(prompt_tokens=sum(len(m.content.split()) for m in messages),
                        completion_tokens=len(text.split())),
            model=self.name,
        )

    async def stream(self, messages: Sequence[Message], params: GenerationParams) -> AsyncIterator[StreamChunk]:
        text = self._next(messages, params)
        words = text.split(" ")
        for i, w in enumerate(words):
            yield StreamChunk(text=w if i == 0 else " " + w)
        yield StreamChunk(finish_reason="stop", usage=Usage(completion_tokens=len(words)))

    async def load(self) -> None:  # nothing to load: the script is the model
        return None

    async def aclose(self) -> None:
        return None
