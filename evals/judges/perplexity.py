"""Perplexity judge: scores each answer's tokens under a chosen language model.

A scorer is any callable `(prompt, continuation) -> list[float]` giving the natural-log
probability of each continuation token given the prompt. Built in: `transformers`, a local
Hugging Face causal LM (a model folder, or a .gguf file that transformers dequantises), loaded
lazily. Name your own with `scorer: package.module:function`. The judgement's `score` is the
summed log-probability and `tokens` the token count; the `perplexity` metric pools them over
the corpus: exp(-sum(score) / sum(tokens)).
"""

from __future__ import annotations

import asyncio
import importlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import ConfigError, MissingDependencyError
from ._base import JudgeCard, JudgeContext, JudgeInput, Judgement, register_judge

TokenScorer = Callable[[str, str], list[float]]


class TransformersScorer:
    """Log-probabilities under a local transformers causal LM (CPU by default)."""

    def __init__(self, model: str, *, device: str = "cpu") -> None:
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise MissingDependencyError(
                "The transformers perplexity scorer needs torch and transformers.",
                hint="Install them with: pip install 'specguard[torch]'",
            ) from exc
        path = Path(model).expanduser()
        if not path.exists():
            raise ConfigError(f"Perplexity model {path} does not exist.",
                              hint="Give a local model folder or .gguf file (no hub downloads).")
        kwargs: dict[str, Any] = {}
        folder = path
        if path.suffix == ".gguf":
            folder, kwargs = path.parent, {"gguf_file": path.name}
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
        self.model = AutoModelForCausalLM.from_pretrained(folder, **kwargs).to(device).eval()
        self.device = device
        self._lock = threading.Lock()

    def __call__(self, prompt: str, continuation: str) -> list[float]:
        torch = self._torch
        prompt_ids = self.tokenizer(prompt, return_tensors="pt").input_ids
        full_ids = self.tokenizer(prompt + continuation, return_tensors="pt").input_ids
        start = prompt_ids.shape[1]
        if full_ids.shape[1] <= start:
            return []
        with self._lock, torch.no_grad():
            logits = self.model(full_ids.to(self.device)).logits[0, :-1].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        targets = full_ids[0, 1:].to(self.device)
        picked = logprobs.gather(1, targets.unsqueeze(1)).squeeze(1)
        return [float(x) for x in picked[start - 1:]]


def load_scorer(spec: str | TokenScorer, **options: Any) -> TokenScorer:
    if callable(spec):
        return spec
    if spec == "transformers":
        if "model" not in options:
            raise ConfigError("The transformers scorer needs `model:` (a local path).")
        return TransformersScorer(**options)
    module, _, attr = spec.partition(":")
    if not attr:
        raise ConfigError(f"Unknown perplexity scorer {spec!r}.",
                          hint="Use 'transformers' (with model: PATH) or 'package.module:func'.")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"Cannot load the perplexity scorer {spec!r}: {exc}") from exc


class PerplexityJudge:
    def __init__(self, scorer: TokenScorer, *, name: str = "perplexity") -> None:
        self.scorer = scorer
        self.name = name
        self.card = JudgeCard(name=name, kind="scorer",
                              description="log-probabilities of the answer under a chosen LM")

    async def judge(self, inp: JudgeInput) -> Judgement:
        start = time.perf_counter()
        lps = await asyncio.to_thread(self.scorer, inp.request, inp.answer)
        if not lps:
            return Judgement(judge=self.name, label=None, parse_ok=False,
                             raw="empty continuation: no tokens to score")
        return Judgement(judge=self.name, label="scored", score=float(sum(lps)),
                         tokens=len(lps), raw=f"{len(lps)} tokens",
                         ms=(time.perf_counter() - start) * 1000)


def _factory(ctx: JudgeContext) -> PerplexityJudge:
    opts = dict(ctx.options)
    return PerplexityJudge(load_scorer(opts.pop("scorer", "transformers"), **opts))


register_judge("perplexity", _factory)
