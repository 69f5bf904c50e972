"""Profile-aware checking: the request is compared with the profile's guidelines (the
activities to decline for this user) before the general guard runs.

The match is lexical and cheap (a fast-tier check): a guideline fires when the user's request
names one of its content words ("drinking alcohol, tequila, beer" fires on "a bottle of
tequila"). That is exactly as good as the guideline list, which is why guidelines are
derived once, then edited and approved by an admin. A request that no guideline names goes
on to the general guard, which also sees the profile and the guidelines.
"""

from __future__ import annotations

import re
from typing import Any

from ..guard import CheckRequest, GuardDecision, Label, Stage, Tier, Verdict
from ..policy import CheckSettings

CATEGORY = "user_profile"
CHECKER = "profile_guidelines"

_WORD = re.compile(r"[a-z][a-z'-]*")
# Words that say nothing about *what* is risky: grammar, and the verbs and nouns every
# guideline and request share ("buy", "help", "activities").
_GENERIC = frozenset([
    # grammar
    "a", "about", "above", "after", "again", "all", "also", "am", "an", "and", "any", "are",
    "as", "at", "be", "because", "been", "being", "below", "between", "both", "but", "by",
    "can", "could", "did", "do", "does", "doing", "done", "during", "each", "either", "else",
    "etc", "even", "ever", "every", "for", "from", "further", "get", "gets", "getting", "go",
    "goes", "going", "got", "had", "has", "have", "having", "he", "her", "here", "hers", "him",
    "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just", "like", "may",
    "me", "might", "more", "most", "much", "must", "my", "myself", "no", "nor", "not", "now",
    "of", "off", "on", "once", "only", "or", "other", "others", "our", "out", "over", "own",
    "same", "she", "should", "so", "some", "such", "than", "that", "the", "their", "them",
    "then", "there", "these", "they", "this", "those", "through", "to", "too", "under", "until",
    "up", "upon", "us", "very", "was", "we", "were", "what", "when", "where", "which", "while",
    "who", "whom", "why", "will", "with", "within", "without", "would", "you", "your", "yours",
    # what every guideline and request says
    "activity", "activities", "action", "actions", "advice", "advise", "advised", "allow",
    "allowed", "amount", "amounts", "assist", "assistance", "assistant", "avoid", "avoiding",
    "buy", "buying", "bought", "purchase", "purchasing", "purchases", "certain", "concern",
    "concerns", "condition", "conditions", "danger", "dangerous", "decline", "declining",
    "engage", "engaging", "especially", "excessive", "harm", "harmful", "health", "help",
    "helping", "high", "including", "include", "information", "involve", "involving", "large",
    "lot", "lots", "make", "making", "many", "need", "needs", "person", "people", "product",
    "products", "provide", "providing", "request", "requests", "risk", "risks", "risky", "safe",
    "safety", "should", "someone", "something", "take", "taking", "thing", "things", "try",
    "trying", "use", "using", "user", "users", "want", "wants", "way", "ways", "instead",
    "related", "regular", "regularly", "high-risk", "kind", "kinds", "type", "types",
])


def _stem(word: str) -> str:
    """A light English stemmer: plural and -ing/-ed forms meet their base word."""
    word = word.strip("'-")
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    for suffix in ("sses", "xes", "ches", "shes", "zes"):
        if word.endswith(suffix):
            return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> set[str]:
    words = (w for w in _WORD.findall(text.lower()) if w not in _GENERIC and len(w) >= 3)
    return {s for s in map(_stem, words) if s not in _GENERIC and len(s) >= 3}


class GuidelineMatcher:
    """Which of a profile's guidelines a text names (by shared content words)."""

    def matches(self, text: str, guidelines: list[str] | tuple[str, ...]) -> list[tuple[str, list[str]]]:
        words = content_words(text)
        found = []
        for g in guidelines:
            shared = sorted(words & content_words(g))
            if shared:
                found.append((g, shared))
        return found

    def verdict(self, request: CheckRequest) -> Verdict:
        text = request.last_user_text if request.stage is Stage.INPUT else (request.response or "")
        found = self.matches(text, request.guidelines)
        if not found:
            return Verdict(stage=request.stage, label=Label.SAFE, tier=Tier.FAST, checker=CHECKER,
                           score=0.0, explanation="no profile guideline applies")
        named = "; ".join(f"{g!r} (on: {', '.join(words)})" for g, words in found)
        return Verdict(stage=request.stage, label=Label.UNSAFE, categories=[CATEGORY], score=1.0,
                       category_scores={CATEGORY: 1.0}, tier=Tier.FAST, checker=CHECKER,
                       explanation=f"for this user's profile, decline: {named}")


class ProfileAwareGuard:
    """A guard in front of a guard: the profile's guidelines first (input stage), then the
    wrapped guard for everything else. Built per request for users with a profile."""

    def __init__(self, inner: Any, matcher: GuidelineMatcher | None = None) -> None:
        self.inner = inner
        self.matcher = matcher or GuidelineMatcher()

    @property
    def tiers(self) -> list[str]:
        return [CHECKER, *self.inner.tiers]

    async def check(self, request: CheckRequest, settings: CheckSettings) -> GuardDecision:
        applies = (settings.enabled and request.stage is Stage.INPUT and request.guidelines
                   and CATEGORY not in settings.disabled_categories)
        if not applies:
            return await self.inner.check(request, settings)
        v = self.matcher.verdict(request)
        if v.label is Label.UNSAFE:
            return GuardDecision(label=Label.UNSAFE, verdicts=[v], decided_by=Tier.FAST,
                                 categories=[CATEGORY], score=1.0, category_scores={CATEGORY: 1.0})
        decision = await self.inner.check(request, settings)
        return decision.model_copy(update={"verdicts": [v, *decision.verdicts]})

    async def check_many(self, requests: list[CheckRequest], settings: CheckSettings) -> list[GuardDecision]:
        return [await self.check(r, settings) for r in requests]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
