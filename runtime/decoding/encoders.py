"""Key encoders: turn a document into (keys, next tokens) for a datastore.

A key is the hidden state after token i, its value the token i+1. The encoder also names its
key space, so a store records what it was built with and refuses any other model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .keyspace import Hook, KeySpace, ModelId, file_sha256, tokenizer_id

if TYPE_CHECKING:
    import numpy as np

    from ..backends.base import TokenStepBackend
    from ..backends.embedded import EmbeddedBackend


@runtime_checkable
class KeyEncoder(Protocol):
    def key_space(self) -> KeySpace: ...

    async def encode(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per text: keys [n-1, dim] (float32) and next-token ids [n-1] (int32)."""
        ...


def embedded_key_space(backend: TokenStepBackend) -> KeySpace:
    """The key space of a token-step backend (the embedded llama.cpp model) at the final-norm
    hook, read through its public token-step interface."""
    steps = backend.token_stepper()
    return KeySpace(
        model=ModelId(
            name=steps.model_path.stem,
            path=str(steps.model_path),
            sha256=file_sha256(steps.model_path),
        ),
        hook=Hook.FINAL_NORM,
        dim=steps.n_embd,
        tokenizer=tokenizer_id(steps.vocab_size, steps.token_text),
    )


class EmbeddedKeyEncoder:
    """Keys from the embedded llama.cpp model (final normalised hidden state)."""

    def __init__(
        self, backend: EmbeddedBackend, *, max_tokens: int = 512, ubatch: int | None = None
    ) -> None:
        self.backend = backend
        self.max_tokens = max_tokens
        self.ubatch = ubatch  # tokens per llama.cpp decode call (None: the whole text)
        self._space: KeySpace | None = None

    def key_space(self) -> KeySpace:
        if self._space is None:
            self._space = embedded_key_space(self.backend)
        return self._space

    async def encode(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        import numpy as np

        dim = self.key_space().dim
        out = []
        for toks, states in await self.backend.token_hidden_states(
            texts, max_tokens=self.max_tokens, ubatch=self.ubatch
        ):
            if states is None or len(toks) < 2:
                out.append((np.zeros((0, dim), np.float32), np.zeros(0, np.int32)))
                continue
            out.append((states[:-1].astype(np.float32), np.asarray(toks[1:], np.int32)))
        return out


__all__ = ["EmbeddedKeyEncoder", "KeyEncoder", "embedded_key_space"]
