"""The deliberative tier (ThinkGuard-style): a model writes a label, categories and a short
critique, in that order, so a caller can stop after the label. Works with any chat backend;
uses constrained output (a JSON schema: llama.cpp grammar, vLLM guided decoding, litellm
response_format) when the backend and the format allow it, and otherwise parses the answer with
anchored patterns. An unparseable answer is an explicit UNDECIDED verdict, never a guess. When
the backend returns logprobs, the score is the label token's probability (unsafe vs safe,
renormalised over the two)."""

from __future__ import annotations

import time

from ..backends.base import Backend
from ..types import GenerationParams
from .formats import GuardFormat, get_format, parse_json_verdict, parse_thinkguard
from .taxonomy import Taxonomy, load_taxonomy
from .verdict import CheckRequest, Tier, Verdict

__all__ = ["DeliberativeChecker", "parse_json_verdict", "parse_thinkguard"]

DEFAULT_SPEC = "Be helpful and harmless."


class DeliberativeChecker:
    tier = Tier.DELIBERATIVE

    def __init__(
        self,
        backend: Backend,
        *,
        spec_text: str = DEFAULT_SPEC,
        taxonomy: Taxonomy | str | None = None,
        format: GuardFormat | str = "thinkguard",
        max_tokens: int = 160,
        logprobs: bool | None = None,
        top_logprobs: int = 10,
        name: str | None = None,
    ) -> None:
        self.backend = backend
        self.spec_text = spec_text
        self.taxonomy = load_taxonomy(taxonomy) if isinstance(taxonomy, str) else (
            taxonomy or load_taxonomy("beavertails")
        )
        self.format = get_format(format)
        self.max_tokens = max_tokens
        caps = backend.capabilities
        self.logprobs = caps.logprobs if logprobs is None else logprobs
        self.top_logprobs = top_logprobs
        self.constrained = caps.constrained_output and self.format.supports_schema
        self.name = name or f"deliberative:{self.format.name}:{backend.name}"

    def _taxonomy_for(self, request: CheckRequest) -> Taxonomy:
        return load_taxonomy(request.taxonomy) if request.taxonomy else self.taxonomy

    async def check(self, request: CheckRequest, *, spec_text: str | None = None,
                    label_only: bool = False) -> Verdict:
        """One deliberative verdict. `label_only=True` stops generating after the label (the
        verdict then has no categories or explanation)."""
        start = time.perf_counter()
        tax = self._taxonomy_for(request)
        cats = tax.enabled(request.disabled_categories)
        params = GenerationParams(
            max_tokens=self.format.label_only_tokens if label_only else self.max_tokens,
            temperature=0.0,
            json_schema=self.format.schema(cats) if self.constrained else None,
            logprobs=self.logprobs,
            top_logprobs=self.top_logprobs if self.logprobs else 0,
        )
        # The scope's spec is the guard's policy; the format renders it its model's way.
        request = request.model_copy(update={
            "spec_text": spec_text or request.spec_text or self.spec_text})
        messages = self.format.messages(request, tax, cats, request.spec_text,
                                        json_answer=self.constrained)
        completion = await self.backend.complete(messages, params)
        parsed = self.format.parse(completion.text, tax, cats, request, json_answer=self.constrained)
        score = None
        if parsed.ok and self.logprobs:
            score = self.format.score(completion.logprobs, request, json_answer=self.constrained)
        return Verdict(
            stage=request.stage,
            label=parsed.label,
            categories=parsed.categories,
            explanation=parsed.explanation if parsed.ok else "the guard's answer could not be parsed",
            score=score,
            tier=self.tier,
            checker=self.name,
            latency_ms=(time.perf_counter() - start) * 1000,
            tokens=completion.usage.total_tokens,
            prompt_tokens=completion.usage.prompt_tokens,
            completion_tokens=completion.usage.completion_tokens,
            model_calls=1,
            raw=completion.text,
            parse_ok=parsed.ok,
        )
