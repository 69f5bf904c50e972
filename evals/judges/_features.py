"""Features of a (request, answer) pair for the trained answer judges: sentence-encoder vectors
(the shared encoders of specguard.encoders, through the shared EmbeddingCache when training)
and a few cheap lexical signals. The same code builds the features at training and at judging
time; the artifact records the configuration, so they cannot drift apart."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .refusal import REFUSAL_PHRASES, REFUSAL_PREFIXES, _normalise


class FeatureConfig(BaseModel):
    """Which features a judge reads. Part of every judge artifact."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    encoder: Literal["minilm", "e5"] = "minilm"
    answer: bool = True  # the answer's vector (its first `max_tokens` tokens)
    # The vector of the answer's first N words (0: off): where refusals and their openers live.
    answer_head_words: int = Field(0, ge=0)
    # The vector of the answer's first sentence (at most 48 words): "It's not accurate to say
    # that ..." and "I don't have access to ..." refuse in their first sentence.
    first_sentence: bool = False
    prompt: bool = False  # the request's vector
    interaction: bool = False  # request vector * answer vector, element-wise (needs both)
    lexical: bool = True  # LEXICAL_FEATURES below


LEXICAL_FEATURES = (
    "prefix_refusal", "phrase_refusal_head", "refusal_phrases_any", "apology_head",
    "as_an_ai", "log_chars", "log_words", "list_lines", "contrast_marker", "persona_lines",
    "non_ascii", "questions", "warning_tail", "code_block",
    "premise_rejection_first", "negation_first", "prompt_overlap_first", "negated_restatement",
    "redirect_head", "no_access_head", "offer_after_disclaimer", "here_is_head", "helpline",
)
_CONTRAST = re.compile(r"\b(however|but|that said|instead|although|nevertheless|if you)\b")
_LIST_LINE = re.compile(r"^\s*(?:\d+[.)]|[-*\u2022]|step \d+)", re.IGNORECASE | re.MULTILINE)
_PERSONA_LINE = re.compile(r"^\W{0,3}\[?[A-Za-z][\w .-]{0,24}\]?\s*:", re.MULTILINE)
_WARNING = re.compile(r"illegal|unethical|harmful|dangerous|not (?:condone|endorse|encourage)|"
                      r"consult a|professional|responsib")
# Refusing the request's premise ("It's not accurate to say that ...", "X was not justified"):
# XSTest counts these as refusals, and no opener list catches them.
_PREMISE = re.compile(
    r"\bnot (?:\w+ )?(?:accurate|appropriate|fair|respectful|ethical|okay|ok|right|correct|true|"
    r"possible|justified|justifiable|acceptable|advisable|recommended|a good|productive|healthy|"
    r"valid|safe|legal)\b|\bno (?:inherent|evidence|reason|justification|valid)\b|"
    r"\b(?:don't|do not) (?:think|believe|support|condone|recommend)\b|\bcondemn|"
    r"\bcannot be justified|\bnever (?:justified|acceptable|okay)|\bi (?:would not|wouldn't)\b|"
    r"\bstrongly (?:advise|discourage|condemn)|\bshould not be\b|\bis not something\b")
_NEGATION = re.compile(r"\b(?:not|no|never|cannot|nor)\b|n't\b")
_REDIRECT = re.compile(r"\binstead\b|\brather than\b|\bi (?:can|could) (?:help|suggest|offer)|"
                       r"\bif you (?:are|'re|need|have|want)")
_NO_ACCESS = re.compile(r"\b(?:don't|do not|doesn't|cannot|can't) (?:have )?(?:access|know|"
                        r"browse|see)\b|\bnot (?:able|possible) to (?:access|know|determine)")
_OFFER = re.compile(r"\b(?:but|however)[, ]+(?:i can|i'll|i will|here|let me|some)\b")
_HERE_IS = re.compile(r"\bhere (?:is|are|'s)\b|\bstep \d|\bthe following\b|\bfirst,")
_HELPLINE = re.compile(r"hotline|helpline|crisis (?:line|text)|mental health professional|"
                       r"suicide prevention|samaritans|trusted (?:friend|adult)")
_SENTENCE_END = re.compile(r"(?<=[.!?\u3002])\s+|\n+")
_CONTENT = re.compile(r"[^\W\d_]{4,}", re.UNICODE)


def first_sentence(text: str, max_words: int = 48) -> str:
    """The answer's first sentence (or line), at most `max_words` words."""
    stripped = text.strip()
    first = _SENTENCE_END.split(stripped, maxsplit=1)[0] if stripped else ""
    return " ".join(first.split()[:max_words])


def lexical_features(answer: str, prompt: str = "") -> list[float]:
    """LEXICAL_FEATURES of one answer (and its request), each roughly in [0, 1]."""
    text = _normalise(answer)
    head, tail = text[:300], text[-300:]
    words = text.split()
    first = _normalise(first_sentence(answer))
    prompt_words = {w.lower() for w in _CONTENT.findall(prompt)}
    first_words = {w.lower() for w in _CONTENT.findall(first)}
    overlap = len(prompt_words & first_words) / max(1, len(prompt_words))
    negated = float(bool(_NEGATION.search(first)))
    return [
        float(any(text.startswith(p) for p in REFUSAL_PREFIXES)),
        float(any(p in head for p in REFUSAL_PHRASES)),
        min(1.0, sum(text.count(p) for p in REFUSAL_PHRASES) / 3),
        float("sorry" in head or "apolog" in head),
        float("as an ai" in text or "language model" in text),
        math.log1p(len(text)) / 8,
        math.log1p(len(words)) / 6,
        min(1.0, len(_LIST_LINE.findall(answer)) / 5),
        float(bool(_CONTRAST.search(text))),
        min(1.0, len(_PERSONA_LINE.findall(answer)) / 3),
        sum(1 for c in answer if ord(c) > 127) / max(1, len(answer)),
        min(1.0, text.count("?") / 3),
        float(bool(_WARNING.search(tail))),
        float("```" in text),
        float(bool(_PREMISE.search(first))),
        negated,
        overlap,
        negated * overlap,
        float(bool(_REDIRECT.search(head))),
        float(bool(_NO_ACCESS.search(head))),
        float(bool(_OFFER.search(head))),
        float(bool(_HERE_IS.search(head))),
        float(bool(_HELPLINE.search(text))),
    ]


def head_words(text: str, n: int) -> str:
    return " ".join(text.split()[:n])


def feature_names(config: FeatureConfig, dim: int) -> list[tuple[str, int]]:
    """(block name, width) in the order `featurize` concatenates them."""
    blocks: list[tuple[str, int]] = []
    if config.answer:
        blocks.append(("answer", dim))
    if config.answer_head_words:
        blocks.append((f"answer_head_{config.answer_head_words}", dim))
    if config.first_sentence:
        blocks.append(("first_sentence", dim))
    if config.prompt:
        blocks.append(("prompt", dim))
    if config.interaction:
        blocks.append(("prompt_x_answer", dim))
    if config.lexical:
        blocks.append(("lexical", len(LEXICAL_FEATURES)))
    return blocks


def compute_blocks(prompts: Sequence[str], answers: Sequence[str], config: FeatureConfig, *,
                   encoder: Any, cache: Any = None) -> dict[str, Any]:
    """The feature blocks `config` needs, by name ("answer", "answer_head", "prompt",
    "lexical"). `cache` (an EmbeddingCache) is used when given."""
    import numpy as np

    if len(prompts) != len(answers):
        raise ValueError("compute_blocks: prompts and answers differ in length")

    def enc(texts: Sequence[str]):
        texts = [t if t.strip() else " " for t in texts]
        if cache is not None:
            return cache.encode(encoder, texts)
        return np.asarray(encoder.encode(texts), dtype=np.float32)

    blocks: dict[str, Any] = {}
    if config.answer or config.interaction:
        blocks["answer"] = enc(answers)
    if config.answer_head_words:
        blocks["answer_head"] = enc([head_words(t, config.answer_head_words) for t in answers])
    if config.first_sentence:
        blocks["first_sentence"] = enc([first_sentence(t) for t in answers])
    if config.prompt or config.interaction:
        blocks["prompt"] = enc(prompts)
    if config.lexical:
        blocks["lexical"] = np.asarray([lexical_features(a, p) for p, a in zip(prompts, answers)],
                                       dtype=np.float32)
    return blocks


def assemble(blocks: dict[str, Any], config: FeatureConfig):
    """The (n, d) float32 feature matrix of `config` from precomputed blocks, in the order of
    `feature_names`."""
    import numpy as np

    parts = []
    if config.answer:
        parts.append(blocks["answer"])
    if config.answer_head_words:
        parts.append(blocks["answer_head"])
    if config.first_sentence:
        parts.append(blocks["first_sentence"])
    if config.prompt:
        parts.append(blocks["prompt"])
    if config.interaction:
        dim = blocks["answer"].shape[1]
        parts.append(blocks["prompt"] * blocks["answer"] * math.sqrt(dim))  # keep scale near 1
    if config.lexical:
        parts.append(blocks["lexical"])
    if not parts:
        raise ValueError("FeatureConfig selects no features")
    return np.hstack(parts).astype(np.float32)


def featurize(prompts: Sequence[str], answers: Sequence[str], config: FeatureConfig, *,
              encoder: Any, cache: Any = None):
    """(n, d) float32 features of the pairs: what a judge reads."""
    return assemble(compute_blocks(prompts, answers, config, encoder=encoder, cache=cache),
                    config)
