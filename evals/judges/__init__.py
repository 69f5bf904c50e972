"""Judges: turn an answer into a label (with raw output and parse status).

Built in: `refusal_match` (string match), `refusal_llm` (any backend), `harmfulness` (a guard),
`fulfilment` (U-SafeBench yes/no, never shown the profile), `toxicity` (pluggable scorers),
`perplexity` (answers scored under a chosen LM), `verdict` (a guard method's own verdict).
Add one with `register_judge(name, factory)`.
"""

from . import fulfilment, harm, perplexity, refusal, toxicity, verdict  # noqa: F401  (register the built-ins)
from ._base import (
    FulfilLabel,
    HarmLabel,
    Judge,
    JudgeContext,
    JudgeInput,
    Judgement,
    RefusalLabel,
    ToxicityLabel,
    build_judge,
    judge_names,
    register_judge,
)
from .fulfilment import FulfilmentJudge, parse_yes_no
from .harm import HarmfulnessJudge
from .perplexity import PerplexityJudge, TransformersScorer, load_scorer
from .refusal import LLMRefusalJudge, RefusalMatchJudge, match_refusal, parse_refusal
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
    "SCORERS",
    "DetoxifyScorer",
    "FulfilLabel",
    "FulfilmentJudge",
    "HarmLabel",
    "HarmfulnessJudge",
    "Judge",
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
    "TransformersScorer",
    "VerdictJudge",
    "build_judge",
    "build_scorer",
    "judge_names",
    "load_scorer",
    "match_refusal",
    "parse_refusal",
    "parse_yes_no",
    "register_judge",
]
