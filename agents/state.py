from __future__ import annotations

import operator
from typing import Annotated, TypedDict

from specguard.guard import GuardDecision, Verdict
from specguard.report import Action, StepRecord
from specguard.types import Message


class ChatState(TypedDict, total=False):
    messages: list[Message]  # the conversation as the client sent it
    draft: str  # the current answer candidate
    answer: str  # what the client receives
    action: Action
    input_decision: GuardDecision
    output_decision: GuardDecision
    transcript: Annotated[list[Message], operator.add]  # draft/critique/revision turns
    rounds: int  # critique/revise rounds done
    verdicts: Annotated[list[Verdict], operator.add]
    steps: Annotated[list[StepRecord], operator.add]
