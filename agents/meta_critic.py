"""The meta-critic (MetaSC): read one answered conversation and propose one general, impersonal
rule for the scope's next candidate version, in the section of the spec's policy document it
belongs to (VIOLATES, SAFE, INSTRUCTIONS or DEFINITIONS; specguard.guard.policy_doc): the spec
stays the sectioned policy the guard models read. An answer without a section is an
INSTRUCTIONS rule (MetaSC's original one-sentence form).

The transcript is untrusted data. It reaches the model quoted between delimiters that its text
cannot close, with a system prompt that says it is data; the proposal is dropped when it copies
a run of words from what the user wrote (the "make the spec say X" attack), from the answer
(which can echo the user or a jailbreak persona) or from its own instructions, speaks in the
first person, or is not one usable sentence. In gated mode the canary gate is the second line of defence.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from pydantic import BaseModel, Field

from ..backends.base import Backend
from ..report import StepRecord
from ..types import Cost, GenerationParams, Message, Role
from ._prompts import prompt

# A proposal sharing this many consecutive words with user-written text is treated as copied.
COPY_WINDOW = 6
MIN_CHARS, MAX_CHARS = 15, 400
_MSG_HEAD, _MSG_TAIL = 700, 500  # long jailbreak templates: keep the start and the request at the end
_TAG = re.compile(r"<\s*/?\s*(transcript|spec)\b[^>]*>", re.IGNORECASE)
_LABEL = re.compile(
    r"^\s*(?:[-*#>\d.)\s]+)?(?:\*\*)?(?:improved |new |updated |revised )?"
    r"(?:safety )?(?:specification|spec|principle)(?:\*\*)?\s*[:\-]\s*",
    re.IGNORECASE,
)
_FIRST_PERSON = re.compile(r"\b(I|I'm|I am|me|my|myself)\b|\[[^\]]*\]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[.!?][\"”'])\s+")
_WORD = re.compile(r"[a-z0-9']+")
# Talk about the task instead of a principle ("The current specification is:", "The transcript
# shows ..."): small models echo the prompt's structure.
_META_TALK = re.compile(r"\b(current specification|transcript|this conversation)\b|:$", re.IGNORECASE)
# "VIOLATES: <rule>" (a bullet, bold or a label around the section name is allowed).
_SECTION = re.compile(r"^\s*(?:[-*\u2022]\s*)?(?:\*\*)?(VIOLATES|SAFE|INSTRUCTIONS|DEFINITIONS)"
                      r"(?:\*\*)?\s*(?:\(\w+\))?\s*[:\-]\s*(?:\*\*)?\s*(.+)$")
SECTIONS = ("VIOLATES", "SAFE", "INSTRUCTIONS", "DEFINITIONS")


class Transcript(BaseModel):
    """One answered request as the meta-critic sees it."""

    id: str
    messages: list[Message]  # the client's conversation (untrusted)
    turns: list[Message] = Field(default_factory=list)  # draft, critique and revision turns
    answer: str = ""

    @classmethod
    def from_chat(cls, request_id: str, messages: Sequence[Message], state: dict) -> Transcript:
        return cls(id=request_id, messages=list(messages), turns=list(state.get("transcript", [])),
                   answer=str(state.get("answer", "")))

    def user_texts(self) -> list[str]:
        return [m.content for m in self.messages if m.role == Role.USER]


class Proposal(BaseModel):
    text: str | None  # the proposed rule; None when dropped
    raw: str  # what the model wrote
    section: str = "INSTRUCTIONS"  # where the rule goes in the spec's policy document
    dropped: str | None = None  # why no sentence was proposed
    steps: list[StepRecord] = Field(default_factory=list)


def quote_transcript(t: Transcript) -> str:
    """The transcript as inert, delimited text: role labels, long turns shortened, and any
    delimiter tag inside it defused so the text cannot close the quote."""
    lines = []
    for m in t.messages:
        lines.append(f"{m.role.value.upper()}: {_shorten(m.content)}")
    assistant_turns = [m.content for m in t.turns if m.role == Role.ASSISTANT]
    labels = ["ASSISTANT (draft)"] + ["CRITIQUE", "ASSISTANT (revision)"] * len(assistant_turns)
    for label, text in zip(labels, assistant_turns, strict=False):
        lines.append(f"{label}: {_shorten(text)}")
    if not assistant_turns and t.answer:
        lines.append(f"ASSISTANT: {_shorten(t.answer)}")
    return _TAG.sub("[tag removed]", "\n".join(lines))


def split_section(raw: str) -> tuple[str, str]:
    """(section, rest) of the model's first non-empty line; INSTRUCTIONS when it names none."""
    first = next((line for line in raw.splitlines() if line.strip()), "")
    m = _SECTION.match(first)
    if m is None:
        return "INSTRUCTIONS", raw
    return m.group(1), m.group(2)


def clean_sentence(raw: str) -> str:
    """The first sentence of the model's answer, without labels, bullets or quotes."""
    text = raw.strip()
    for line in text.splitlines():
        if line.strip():
            text = line.strip()
            break
    text = _LABEL.sub("", text)
    text = re.sub(r"^\s*(?:[-*•>]|\d+[.)])\s+", "", text).strip().strip('"“”\'`*').strip()
    parts = _SENTENCE_END.split(text)
    sentence = parts[0]
    if len(sentence) < MIN_CHARS and len(parts) > 1:
        sentence = f"{sentence} {parts[1]}"
    return sentence.strip().strip('"“”\'`*').strip()


def copied_from(sentence: str, sources: Sequence[str], window: int = COPY_WINDOW) -> bool:
    """Whether `sentence` repeats `window` consecutive words of any source text."""
    words = _WORD.findall(sentence.lower())
    if len(words) < window:
        return False
    grams = {tuple(words[i : i + window]) for i in range(len(words) - window + 1)}
    for src in sources:
        w = _WORD.findall(src.lower())
        if any(tuple(w[i : i + window]) in grams for i in range(len(w) - window + 1)):
            return True
    return False


class MetaCritic:
    """Proposes one spec sentence from a transcript. Any backend; greedy by default."""

    def __init__(self, backend: Backend, *, max_tokens: int = 80) -> None:
        self.backend = backend
        self.params = GenerationParams(max_tokens=max_tokens, temperature=0.0)

    async def propose(self, transcript: Transcript, current_spec: str) -> Proposal:
        start = time.perf_counter()
        messages = [
            Message(role=Role.SYSTEM, content=prompt("meta_critic_system")),
            Message(role=Role.USER, content=prompt("meta_critic").format(
                spec=_TAG.sub("[tag removed]", current_spec), transcript=quote_transcript(transcript))),
        ]
        out = await self.backend.complete(messages, self.params)
        step = StepRecord.timed("meta_critic", start, Cost.of(out.usage))
        section, rest = split_section(out.text)
        sentence = clean_sentence(rest)
        reason = self._reject_reason(sentence, transcript, current_spec)
        if reason is not None:
            return Proposal(text=None, raw=out.text, section=section, dropped=reason, steps=[step])
        return Proposal(text=sentence, raw=out.text, section=section, steps=[step])

    @staticmethod
    def _reject_reason(sentence: str, transcript: Transcript, current_spec: str) -> str | None:
        if len(sentence) < MIN_CHARS:
            return f"not a usable sentence ({len(sentence)} characters)"
        letters = sum(ch.isalpha() or ch.isspace() for ch in sentence)
        if len(re.findall(r"[A-Za-z]{2,}", sentence)) < 4 or letters < 0.8 * len(sentence):
            return "not a sentence in words"
        if len(sentence) > MAX_CHARS:
            return f"longer than one sentence ({len(sentence)} characters)"
        if _TAG.search(sentence):
            return "contains a delimiter tag"
        if _META_TALK.search(sentence):
            return "talks about the task instead of stating a principle"
        if copied_from(sentence, transcript.user_texts()):
            return f"copies {COPY_WINDOW}+ consecutive words from the user's messages"
        # What the models wrote (draft, critiques, revisions), not specguard's own critique
        # prompts among the turns: those quote the current spec, whose wording a new rule may
        # share (the same framing clause as an earlier rule) without copying anyone's words.
        written = [m.content for m in transcript.turns if m.role == Role.ASSISTANT]
        if copied_from(sentence, written + [transcript.answer]):
            return f"copies {COPY_WINDOW}+ consecutive words from the answer (which may echo the user)"
        if copied_from(sentence, [prompt("meta_critic"), prompt("meta_critic_system")]):
            return "repeats the meta-critic's own instructions"
        if _FIRST_PERSON.search(sentence):
            return "not impersonal (first person)"
        if sentence.strip() in current_spec:
            return "already in the specification"
        return None


def _shorten(text: str) -> str:
    text = text.strip()
    if len(text) <= _MSG_HEAD + _MSG_TAIL:
        return text
    return f"{text[:_MSG_HEAD]} [...] {text[-_MSG_TAIL:]}"
