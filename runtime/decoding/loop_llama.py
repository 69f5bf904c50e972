"""Goodtriever on a backend's public token-step interface (the embedded llama.cpp model), one
sequence at a time.

After each decode the stepper gives the base logits and the final normalised hidden state of
the last token, so a step costs one decode, one search per datastore side and the combination
(combine.py, through Retriever.step). Everything here runs on the stepper's worker thread
(`stepper.executor`): the model's KV cache belongs to one generation at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from ..errors import BackendError
from .retrieval import Retriever, plain_step, sample

if TYPE_CHECKING:
    from ..backends.base import TokenStepBackend


class LlamaDetoxGenerator:
    """Token-by-token generation with an optional Goodtriever retriever (None: plain
    top-p decoding on the same path, the baseline)."""

    def __init__(
        self, backend: TokenStepBackend, retriever: Retriever | None, *, top_p: float = 0.9,
        ubatch: int | None = None,
    ) -> None:
        self.steps = backend.token_stepper()
        self.steps.ubatch = ubatch  # prompt tokens per decode call (None: the context's n_batch)
        self.retriever = retriever
        self.top_p = retriever.settings.top_p if retriever else top_p

    @property
    def eos(self) -> int:
        return self.steps.eos

    def detokenize(self, tokens: Sequence[int]) -> bytes:
        return self.steps.detokenize(tokens)

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        return self.steps.tokenize(text, special=special)

    def next_logprobs(self, logits, hidden):
        import torch

        logits = torch.from_numpy(logits)[None, :]
        if self.retriever is None:
            return plain_step(logits, self.top_p)
        return self.retriever.step(logits, hidden[None, :])

    def generate(
        self,
        prompt: Sequence[int],
        *,
        max_new_tokens: int,
        temperature: float = 1.0,
        seed: int = 0,
        stop_ids: Sequence[int] = (),
        samples: int = 1,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> Iterator[tuple[int, int, float]]:
        """Yield (sample index, token id, its log-prob under the combined distribution) as each
        token is chosen. With samples > 1 the prompt is decoded once and its KV cache reused."""
        import torch

        steps = self.steps
        if not prompt:
            raise BackendError("Empty prompt.", hint="Give the model at least one token.")
        if len(prompt) + max_new_tokens > steps.n_ctx:
            raise BackendError(
                f"The prompt ({len(prompt)} tokens) and {max_new_tokens} new tokens exceed the "
                f"context ({steps.n_ctx}).",
                hint="Shorten the prompt or ask for fewer tokens.",
            )
        first = steps.prefill(prompt)
        gen = torch.Generator().manual_seed(seed)
        stops = set(stop_ids) | {steps.eos}
        for s in range(samples):
            if s:
                steps.rewind(len(prompt))
            logits, hidden = first
            n_past = len(prompt)
            for _ in range(max_new_tokens):
                if cancelled():
                    return
                lp = self.next_logprobs(logits, hidden)
                tok = int(sample(lp, temperature, gen)[0])
                yield s, tok, float(lp[0, tok])
                if tok in stops:
                    break
                logits, hidden = steps.advance(tok, n_past)
                n_past += 1


__all__ = ["LlamaDetoxGenerator"]
