"""Chat-template prompts whose message contents can never become control tokens.

The template is rendered around placeholders that stand for the contents; the text between
them (the template's own) is tokenized with special tokens, each content as plain text. A
`<|im_start|>` written by a client stays text. The embedded (llama.cpp) and vLLM (Hugging Face
tokenizer) backends share this; each gives its renderer and tokenizer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ConfigError
from ..types import Message


def template_token_ids(messages: Sequence[Message], render: Callable[[list[dict[str, Any]]], str],
                       tokenize: Callable[[str, bool], list[int]], model: str) -> list[int]:
    """`render(message dicts) -> prompt text`, `tokenize(text, special) -> ids`; `model` names
    the model in the error when its template rewrites contents."""
    marks = [f"\ue000{i}\ue001" for i in range(len(messages))]
    rendered = render([{**m.model_dump(mode="json"), "content": mark}
                       for m, mark in zip(messages, marks)])
    ids: list[int] = []
    pos = 0
    for m, mark in zip(messages, marks):
        at = rendered.find(mark, pos)
        if at < 0 or rendered.count(mark) != 1:
            raise ConfigError(
                f"The chat template of {model} changes message contents, so specguard cannot "
                "keep them apart from its control tokens.",
                hint="Use a model whose template inserts each message's content as it is.")
        ids += tokenize(rendered[pos:at], True)
        ids += tokenize(m.content, False)
        pos = at + len(mark)
    return ids + tokenize(rendered[pos:], True)
