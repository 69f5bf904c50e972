"""The revision gate: a revision replaces the draft only if it is safer *and* still an answer.

MetaSC's critique -> revise step helps only when the reviser is capable; a small model's
"revision" is often talk about the revision ("Here's a rewritten version of the previous answer
with a new focus on the safety specification ...") or a generic lecture that no longer answers
the request. So the chat graph (specguard.graph) puts every revision through this gate:

1. safer: the output check scores the revision below the draft (P(unsafe) when both checks
   have a score; otherwise the revision must pass where the draft was flagged);
2. an answer: the trained compliance judge (specguard.answers, the eval harness's `refusal`
   judge) says complied or partial, and the revision does not talk about the revision process
   instead of answering; when the draft was not flagged (it would be kept), the revision must
   also answer at least as fully as the draft (partial does not replace complied: XSTest
   counts a partial answer as a refusal);
3. on topic: the sentence-encoder cosine between the request and the revision is at or above
   a floor measured on validation data (specs/gate/topic_floor.json, written by
   scripts/fit_topic_floor.py: the 5th percentile of real answers' similarity to their own
   request on the validation parts, so 95% of real answers pass).

A rejected revision never reaches the client: a flagged draft is refused, an unflagged draft
is kept. The safety report records each revision's fate and why (`SafetyReport.revisions`).
When a check cannot run (no shipped judge or encoder), the revision is rejected and the reason
says so: a gate that cannot judge fails closed.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from .answers import AnswerJudge, Compliance, load_answer_judge

if TYPE_CHECKING:
    from .guard import GuardDecision

# Talk about the revision instead of an answer: what small rewriters write when they echo the
# critique/revise instructions. Looked for in the revision's opening.
_PROCESS_TALK = re.compile(
    r"\b(?:(?:re)?written|revised|updated|improved|new) (?:version|response|answer)\b"
    r"|\b(?:previous|original|earlier) (?:answer|response)\b"
    r"|\b(?:the|your|this) critique\b|\bsafety specification\b|\bcritique (?:says|points)\b",
    re.IGNORECASE)
_OPENING = 240  # characters of the revision where process talk disqualifies it


class RevisionFate(BaseModel):
    """What became of one revision (one critique/revise round)."""

    round: int
    accepted: bool
    reasons: list[str] = Field(default_factory=list)  # why it was rejected (empty: accepted)
    draft_score: float | None = None  # the output check's P(unsafe) of the answer it would replace
    revision_score: float | None = None
    draft_flagged: bool = False
    revision_flagged: bool = False
    compliance: str | None = None  # the compliance judge's label of the revision
    topic_similarity: float | None = None
    topic_floor: float | None = None
    judge: str | None = None  # which compliance judge decided


@dataclass(frozen=True)
class TopicFloor:
    value: float
    source: str


def load_topic_floor(path: str | Path | None = None) -> TopicFloor | None:
    """The shipped floor (specs/gate/topic_floor.json), or None when none is shipped."""
    p = Path(path) if path else Path(str(resources.files("specguard.specs") / "gate" /
                                         "topic_floor.json"))
    if not p.is_file():
        return None
    data = json.loads(p.read_text(encoding="utf-8"))
    return TopicFloor(value=float(data["floor"]), source=str(p.name))


def process_talk(text: str) -> str | None:
    """The phrase that shows `text` talks about the revision instead of answering, or None."""
    m = _PROCESS_TALK.search(text[:_OPENING])
    return m.group(0) if m else None


_RANK = {Compliance.NO_ANSWER: 0, Compliance.REFUSED: 0, Compliance.PARTIAL: 1,
         Compliance.COMPLIED: 2}


def _score(decision: GuardDecision | None) -> float:
    """The output check's P(unsafe), or its label as 0/1 when it has no score."""
    if decision is None:
        return 0.0
    if decision.score is not None and not decision.undecided:
        return float(decision.score)
    return 1.0 if decision.blocked else 0.0


def safer(draft: GuardDecision | None, revision: GuardDecision | None) -> tuple[bool, str]:
    """Whether the revision scored safer on the output check than the draft did."""
    if revision is None:
        return False, "the revision's output check did not run"
    if revision.undecided:
        return False, "the output check could not decide on the revision"
    if revision.blocked and not (draft is not None and draft.blocked):
        return False, "the output check flags the revision but not the draft"
    d, r = _score(draft), _score(revision)
    both_scored = (draft is not None and draft.score is not None and not draft.undecided
                   and revision.score is not None)
    if both_scored:
        if r < d:
            return True, ""
        return False, f"not safer on the output check (P(unsafe) {d:.2f} -> {r:.2f})"
    if draft is not None and draft.blocked and not revision.blocked:
        return True, ""
    return False, "not safer on the output check (same label, no score to compare)"


class RevisionGate:
    """Judges revisions. `compliance` (the trained refusal judge) and `encoder` (for topic
    similarity) are loaded from the shipped artifacts on first use unless given; either may be
    missing, and then every revision is rejected with that reason."""

    def __init__(self, compliance: AnswerJudge | None = None, *, floor: TopicFloor | None = None,
                 encoder: Any = None, load_shipped: bool = True) -> None:
        self.compliance = compliance
        self.floor = floor
        self.encoder = encoder
        self._pending = load_shipped
        self._lock = threading.Lock()

    def _ensure(self) -> None:
        with self._lock:
            if not self._pending:
                return
            self._pending = False
            if self.compliance is None:
                self.compliance = load_answer_judge("refusal")
            if self.floor is None:
                self.floor = load_topic_floor()
            if self.encoder is None and self.compliance is not None:
                self.encoder = self.compliance.encoder

    def similarity(self, request: str, text: str) -> float:
        import numpy as np

        self._ensure()
        v = np.asarray(self.encoder.encode([request or " ", text or " "]), dtype=np.float32)
        return float(v[0] @ v[1])

    async def judge(self, *, index: int, request: str, revision: str, draft: str,
                    draft_decision: GuardDecision | None,
                    revision_decision: GuardDecision | None,
                    floor: float | None = None) -> RevisionFate:
        """The fate of revision number `index` (1-based) of `draft`, an answer to `request`."""
        return await asyncio.to_thread(self._judge, index, request, revision, draft,
                                       draft_decision, revision_decision, floor)

    def _judge(self, index: int, request: str, revision: str, draft: str, draft_decision,
               revision_decision, floor: float | None) -> RevisionFate:
        self._ensure()
        reasons: list[str] = []
        ok, why = safer(draft_decision, revision_decision)
        if not ok:
            reasons.append(why)
        fate = RevisionFate(
            round=index, accepted=False,
            draft_score=None if draft_decision is None else draft_decision.score,
            revision_score=None if revision_decision is None else revision_decision.score,
            draft_flagged=bool(draft_decision is not None and draft_decision.blocked),
            revision_flagged=bool(revision_decision is not None and revision_decision.blocked),
        )
        talk = process_talk(revision)
        if talk:
            reasons.append(f"talks about the revision instead of answering (\"{talk}\")")
        if self.compliance is None:
            reasons.append("no compliance judge is available to confirm it still answers "
                           "(install specguard[guard]; ship specs/judges/refusal.json)")
        else:
            kept = not fate.draft_flagged  # the draft would be kept: it is the bar
            labels = self.compliance.classify([request] * (1 + kept),
                                              [revision, *([draft] if kept else [])])
            label = Compliance(labels[0].label)
            fate.compliance, fate.judge = label.value, self.compliance.name
            if not label.answers:
                reasons.append(f"no longer answers the request (compliance judge: {label.value})")
            elif kept and _RANK[label] < _RANK[Compliance(labels[1].label)]:
                reasons.append(f"answers less fully than the draft (compliance judge: "
                               f"{labels[1].label} -> {label.value})")
        limit = floor if floor is not None else (self.floor.value if self.floor else None)
        if self.encoder is None or limit is None:
            reasons.append("no topic floor or encoder to confirm it stays on topic")
        else:
            sim = self.similarity(request, revision)
            fate.topic_similarity, fate.topic_floor = round(sim, 4), round(limit, 4)
            if sim < limit:
                reasons.append(f"off topic (similarity to the request {sim:.2f} < floor {limit:.2f})")
        fate.reasons = reasons
        fate.accepted = not reasons
        return fate


__all__ = ["RevisionFate", "RevisionGate", "TopicFloor", "load_topic_floor", "process_talk", "safer"]
