"""Judges: turn an answer into a label (with raw output and parse status).

Built in: `refusal` (trained: complied / refused / partial, offline), `answer_harm` (trained:
did the answer give what a harmful request asked for?), `refusal_match` (string match: the
baseline and a tie-breaker), `refusal_llm` (any capable model), `harmfulness` (the runtime's
guard), `fulfilment` (U-SafeBench yes/no, never shown the profile), `toxicity` (pluggable
scorers), `perplexity` (answers scored under a chosen LM), `verdict` (a guard method's own
verdict). Every answer judge labels an output that is no answer (empty, cut off, not language)
`no_answer` first. Each judge carries a `card`: what it is and how far it agrees with people.
The embedded 135M model is not a judge: `refusal_llm` and `fulfilment` refuse it unless told
`allow_embedded: true`. Add a judge with `register_judge(name, factory)`.
"""

from . import fulfilment, harm, perplexity, refusal, toxicity, trained, verdict  # noqa: F401  (register the built-ins)
from ._base import (
    NO_ANSWER,
    FulfilLabel,
    HarmLabel,
    Judge,
    JudgeCard,
    JudgeContext,
    JudgeInput,
    Judgement,
    RefusalLabel,
    ToxicityLabel,
    build_judge,
    judge_names,
    register_judge,
)
from ._no_answer import no_answer_reason
from .fulfilment import FulfilmentJudge, parse_yes_no
from .harm import HarmfulnessJudge
from .perplexity import PerplexityJudge, TransformersScorer, load_scorer
from .refusal import LLMRefusalJudge, RefusalMatchJudge, match_refusal, parse_refusal
from .trained import TrainedJudge
from .verdict import VerdictJudge
from .toxicity import (
    SCORERS,
    DetoxifyScorer,
    PerspectiveScorer,
    ProfanityCheckScorer,
    ToxicityJudge,
    ToxicityScorer,
    build_scorer,
)

__all__ = [
    "NO_ANSWER",
    "SCORERS",
    "DetoxifyScorer",
    "FulfilLabel",
    "FulfilmentJudge",
    "HarmLabel",
    "HarmfulnessJudge",
    "Judge",
    "JudgeCard",
    "JudgeContext",
    "JudgeInput",
    "Judgement",
    "LLMRefusalJudge",
    "PerplexityJudge",
    "PerspectiveScorer",
    "ProfanityCheckScorer",
    "RefusalLabel",
    "RefusalMatchJudge",
    "ToxicityJudge",
    "ToxicityLabel",
    "ToxicityScorer",
    "TrainedJudge",
    "TransformersScorer",
    "VerdictJudge",
    "build_judge",
    "build_scorer",
    "judge_names",
    "load_scorer",
    "match_refusal",
    "no_answer_reason",
    "parse_refusal",
    "parse_yes_no",
    "register_judge",
]
