"""`DetoxBackend`: a token-step backend (Capabilities.token_steps: the embedded model) decoding
with Goodtriever, behind the Backend protocol.

The chat graph uses it when a policy asks for stream_protection "detox": tokens stream as
they are generated (each already steered away from the toxic datastore), and `describe()`
goes into the safety report (datastores, alpha, k).
"""

from __future__ import annotations

import asyncio
import codecs
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..backends._bridge import iterate_in_thread
from ..errors import ContextLengthError, InvalidRequestError
from ..types import Capabilities, Completion, GenerationParams, Message, StreamChunk, TokenLogprob, Usage
from .retrieval import DetoxSettings, Retriever

if TYPE_CHECKING:
    from ..backends.base import TokenStepBackend


class DetoxBackend:
    """Goodtriever decoding on a token-step backend (default: the embedded llama.cpp model)."""

    capabilities = Capabilities(
        streaming=True, logprobs=True, constrained_output=False, hidden_states=False
    )

    def __init__(
        self,
        settings: DetoxSettings,
        backend: TokenStepBackend | None = None,
        *,
        model_path: str | Path | None = None,
    ) -> None:
        if backend is None:
            from ..backends.embedded import EmbeddedBackend

            backend = EmbeddedBackend(model_path)
        self.base = backend
        self.settings = settings
        self.name = f"detox:{backend.name}"
        self._retriever: Retriever | None = None
        self._lock = threading.Lock()

    def retriever(self) -> Retriever:
        """Open the datastores (once), refusing any built for another model."""
        with self._lock:
            if self._retriever is None:
                from .encoders import embedded_key_space

                self._retriever = Retriever.open(self.settings, embedded_key_space(self.base))
            return self._retriever

    async def load(self) -> None:
        await asyncio.to_thread(self.retriever)

    def describe(self) -> dict[str, Any]:
        """For the safety report: the method, datastores (with key counts once open), alpha, k."""
        return self._retriever.describe() if self._retriever else self.settings.describe()

    async def complete(self, messages: Sequence[Message], params: GenerationParams) -> Completion:
        text: list[str] = []
        logprobs: list[TokenLogprob] = []
        last = StreamChunk()
        async for chunk in self._generate(messages, params, logprobs if params.logprobs else None):
            text.append(chunk.text)
            last = chunk
        return Completion(
            text="".join(text),
            finish_reason=last.finish_reason or "stop",
            usage=last.usage or Usage(),
            logprobs=logprobs if params.logprobs else None,
            model=self.name,
        )

    def stream(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> AsyncIterator[StreamChunk]:
        return self._generate(messages, params, None)

    async def _generate(
        self, messages: Sequence[Message], params: GenerationParams, logprobs: list | None
    ) -> AsyncIterator[StreamChunk]:
        if params.json_schema is not None:
            raise InvalidRequestError(
                "Detoxified decoding does not support constrained (JSON schema) output.",
                hint="Use the plain embedded backend for structured output.",
            )
        if params.top_logprobs:
            raise InvalidRequestError("Detoxified decoding returns no top_logprobs.")
        from .loop_llama import LlamaDetoxGenerator

        retriever = await asyncio.to_thread(self.retriever)
        gen = LlamaDetoxGenerator(self.base, retriever)
        steps = gen.steps
        stops = [*params.stop, *steps.stop_strings]

        def produce(cancelled) -> Iterator[StreamChunk]:
            # Contents tokenized as text: control tokens come from the chat template only.
            tokens = steps.chat_tokens(messages)
            budget = steps.n_ctx - len(tokens) - 1
            if budget < 1:
                raise ContextLengthError(
                    f"The conversation ({len(tokens)} tokens) does not fit the model's context "
                    f"of {steps.n_ctx} tokens.", hint="Shorten the conversation.",
                )
            stop_ids = [t[0] for s in steps.stop_strings if len(t := gen.tokenize(s)) == 1]
            out = _StopText(stops)
            decoder = codecs.getincrementaldecoder("utf-8")("replace")
            n = 0
            finish = "length"
            for _, tok, lp in gen.generate(
                tokens, max_new_tokens=min(params.max_tokens, budget),
                temperature=params.temperature, seed=params.seed or 0, stop_ids=stop_ids,
                cancelled=cancelled,
            ):
                if tok in stop_ids or tok == gen.eos:
                    finish = "stop"
                    break
                n += 1
                piece = decoder.decode(gen.detokenize([tok]))
                if logprobs is not None:
                    logprobs.append(TokenLogprob(token=piece, logprob=lp))
                ready, hit = out.feed(piece)
                if ready:
                    yield StreamChunk(text=ready)
                if hit:
                    finish = "stop"
                    break
            if not out.hit:
                tail = out.flush(decoder.decode(b"", final=True))
                if tail:
                    yield StreamChunk(text=tail)
            yield StreamChunk(finish_reason=finish,
                              usage=Usage(prompt_tokens=len(tokens), completion_tokens=n))

        async for chunk in iterate_in_thread(steps.executor, produce, what="detoxified decoding"):
            yield chunk

    async def aclose(self) -> None:
        return None


class _StopText:
    """Streams text while holding back any tail that could start a stop string."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.pending = ""
        self.hit = False

    def feed(self, piece: str) -> tuple[str, bool]:
        self.pending += piece
        for s in self.stops:
            i = self.pending.find(s)
            if i >= 0:
                self.hit = True
                out, self.pending = self.pending[:i], ""
                return out, True
        hold = 0
        for s in self.stops:
            for j in range(min(len(s) - 1, len(self.pending)), 0, -1):
                if self.pending.endswith(s[:j]):
                    hold = max(hold, j)
                    break
        cut = len(self.pending) - hold
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out, False

    def flush(self, extra: str) -> str:
        out, self.pending = self.pending + extra, ""
        return out


__all__ = ["DetoxBackend"]
