"""What of a conversation the fast tier scores, as units of text: one function for training and
serving.

Every client-written turn is untrusted input: system, developer (sent as system), each user
turn, earlier assistant turns the client supplies, tool results. So the input check scores
each turn on its own (a harmful request moved into the system prompt or an earlier turn is
still scored), each paragraph of a turn that has several on its own (a request after a benign
passage is read as itself, not diluted by the passage's end in the last window), plus the
recent user turns read together (a request split across turns), plus each line of a turn that
has several on its own (a request written on the last line of a paragraph of prose), plus
each obfuscated turn
decoded (views.py), and decides on the riskiest. The output check scores
the exchange: each window of the draft with the end of the request it answers. Long texts are
windows, never truncated.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..types import Message, Role
from .features import windows
from .views import views
from .verdict import Stage

JOINED_USER_TURNS = 3  # how many recent user turns are also read as one text
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
OUTPUT_WINDOW_TOKENS = 192  # of the draft per unit; the rest of the encoder's window is request
REQUEST_TAIL_CHARS = 300  # how much of the request an output unit carries


@dataclass(frozen=True)
class Segment:
    """One text the check reads: a message (`turn` its index, `role` its role), the recent user
    turns together (`turn` None, role "conversation"), or the draft (`turn` -1)."""

    turn: int | None
    role: str
    text: str
    view: str = ""  # "" for the text as sent; else how it was decoded (views.py)
    paragraph: int | None = None  # which paragraph of the turn (0-based), when read alone
    line: int | None = None  # which line of the turn (0-based), when read alone


@dataclass(frozen=True)
class Unit:
    segment: Segment
    window: int
    text: str  # what the features are computed from


def input_segments(messages: Sequence[Message]) -> list[Segment]:
    segs = []
    for i, m in enumerate(messages):
        if m.content and m.content.strip():
            segs.append(Segment(i, str(m.role), m.content))
            paras = paragraphs(m.content)
            segs.extend(Segment(i, str(m.role), text, paragraph=k) for k, text in paras)
            # A line read alone unless it already is one of the turn's paragraphs.
            known = {text for _, text in paras}
            segs.extend(Segment(i, str(m.role), text, line=k)
                        for k, text in lines(m.content) if text not in known)
            # An obfuscated turn is also read decoded (base64, leetspeak, spacing).
            segs.extend(Segment(i, str(m.role), text, kind) for kind, text in views(m.content))
    users = [m.content for m in messages if m.role == Role.USER and m.content.strip()]
    if len(users) >= 2:
        segs.append(Segment(None, "conversation", "\n\n".join(users[-JOINED_USER_TURNS:])))
    return segs or [Segment(None, "conversation", "")]


def paragraphs(text: str) -> list[tuple[int, str]]:
    """(index, paragraph) for each paragraph of `text` (split at blank lines) when it has more
    than one. Every one: a long document's middle paragraphs are read alone like its ends
    (the checker's encoder budget, not this, bounds what a check costs)."""
    return _several(_PARAGRAPH_BREAK.split(text))


def lines(text: str) -> list[tuple[int, str]]:
    """(index, line) for each non-empty line of `text` when it has more than one. A request
    written on its own line at the end of a paragraph of prose (no blank line between them) is
    otherwise read only in windows that mix it with the prose: the shipped checker caught 43%
    of validation harmful requests placed that way, and 86% read as lines (85% sent bare;
    docs/results/guard.md, "Benign passages")."""
    return _several(text.split("\n"))


def _several(pieces: Sequence[str]) -> list[tuple[int, str]]:
    """(index, stripped piece) for the non-empty pieces, when there are at least two."""
    parts = [(k, p.strip()) for k, p in enumerate(pieces)]
    parts = [(k, p) for k, p in parts if p]
    return parts if len(parts) >= 2 else []


def last_user_text(messages: Sequence[Message]) -> str:
    for m in reversed(messages):
        if m.role == Role.USER:
            return m.content
    return ""


def pair_text(request: str, answer: str) -> str:
    """An output unit: the end of the request, then (a window of) the answer."""
    tail = request[-REQUEST_TAIL_CHARS:]
    return f"User: {tail}\nAssistant: {answer}"


def units(stage: Stage, segments: Sequence[Segment], request: str = "") -> list[Unit]:
    """The scored units of `segments`: input windows of each segment; output windows of the
    draft, each paired with the end of `request`."""
    out: list[Unit] = []
    for seg in segments:
        if stage is Stage.OUTPUT:
            from ..encoders import load_encoder

            enc = load_encoder("minilm")
            parts = enc.windows(seg.text, max_tokens=OUTPUT_WINDOW_TOKENS) if seg.text else [""]
            out.extend(Unit(seg, i, pair_text(request, p)) for i, p in enumerate(parts))
        else:
            out.extend(Unit(seg, w.index, w.text) for w in windows(seg.text))
    return out


def request_units(stage: Stage, messages: Sequence[Message], response: str | None) -> list[Unit]:
    """Every unit of a check request."""
    if stage is Stage.OUTPUT:
        return units(stage, [Segment(-1, str(Role.ASSISTANT), response or "")],
                     last_user_text(messages))
    return units(stage, input_segments(messages))
