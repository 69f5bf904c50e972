"""The profile-aware check in front of the general guard, for users with a profile.

On the input stage, before the general guard: the profile check (specguard.profiles.
ProfileCheck) scores the request against this user's profile through the guideline library,
and matches it against the profile's approved guidelines, both by encoder similarity. When
either says the request is risky for this user, the decision is UNSAFE with the category
`user_profile` and the verdict names the guideline (its `raw` holds the ProfileMatch, which the
refusal reads); otherwise the general guard decides, and the profile verdicts stay in the
decision for the report. The output stage is the general guard's.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..guard import CheckRequest, GuardDecision, Label, Stage, Tier, Verdict
from ..policy import CheckSettings, OnUndecided, ProfileCheckSettings
from ._check import ProfileCheck, ProfileMatch

CATEGORY = "user_profile"
CHECKER = "profile_check"  # the scorer (profile text x request, through the library)
MATCHER = "profile_guidelines"  # the approved-guideline matcher


def profile_match(decision: GuardDecision | None) -> ProfileMatch | None:
    """The ProfileMatch of the profile verdict that blocked `decision`, if one did."""
    if decision is None or CATEGORY not in decision.categories:
        return None
    for v in decision.verdicts:
        if v.checker in (CHECKER, MATCHER) and v.label is Label.UNSAFE and v.raw:
            return ProfileMatch.model_validate_json(v.raw)
    return None


def profile_refusal(message: str, profile_text: str, match: ProfileMatch | None, *,
                    alternatives: bool = True) -> str:
    """The refusal when the user's own profile is the reason: it says so (the same request may
    be fine for someone else), names the guideline and why, and, where the policy allows,
    offers the guideline's safe alternative."""
    text = (f'{message} Given what you told us about yourself ("{profile_text.strip()}"), this '
            "could be unsafe for you in particular")
    if match is None or not match.guideline:
        return text + "."
    text += f': it falls under "{match.guideline.rstrip(".")}".'
    if match.why:
        text += f" {match.why}"
    if alternatives and match.alternative:
        text += f" {match.alternative}"
    return text


class GuidelineMatcher:
    """Which of a profile's guidelines a request is about, by encoder similarity (a library
    guideline also by its activity's exemplar requests); never by shared words."""

    def __init__(self, check: ProfileCheck) -> None:
        self.check = check

    def matches(self, text: str, guidelines: list[str] | tuple[str, ...], *,
                threshold: float | None = None) -> list[tuple[str, float]]:
        """(guideline, cosine) of the guidelines the request matches (cosine at or above the
        threshold, default the artifact's, chosen on validation data; or, for a library
        guideline, its activity's probability at or above the artifact's), closest first."""
        if not guidelines:
            return []
        art = self.check.artifact
        r = self.check.encode([text])
        scores = self.check.approved_scores(r[0], art.index.request_side(r), list(guidelines))
        t_cos, t_act = art.match_thresholds(with_scorer=False)
        t = t_cos if threshold is None else threshold
        return sorted(((s.guideline, s.cosine) for s in scores if s.fires(t, t_act)),
                      key=lambda x: -x[1])


def _drop(task: asyncio.Future | None) -> None:
    """Abandon the general guard's check started alongside: its answer is not needed."""
    if task is None:
        return
    if task.done():
        if not task.cancelled():
            task.exception()  # retrieved, so that an error in it is not logged as unhandled
    else:
        task.cancel()


class ProfileAwareGuard:
    """A guard in front of a guard: the profile check first (input stage), then the wrapped
    guard. Built per request for users with a profile (specguard.context)."""

    def __init__(self, inner: Any, check: ProfileCheck | None,
                 settings: ProfileCheckSettings | None = None, *, load_error: str | None = None) -> None:
        self.inner = inner
        self.check_ = check
        self.settings = settings or ProfileCheckSettings()
        self.load_error = load_error

    @property
    def tiers(self) -> list[str]:
        return [CHECKER, *self.inner.tiers]

    def applies(self, request: CheckRequest, settings: CheckSettings) -> bool:
        return (settings.enabled and self.settings.enabled and request.stage is Stage.INPUT
                and request.profile is not None and CATEGORY not in settings.disabled_categories
                and (self.settings.library or bool(request.guidelines)))

    def verdicts(self, request: CheckRequest) -> list[Verdict]:
        """The profile verdicts of one input request (CPU work: call off the event loop)."""
        start = time.perf_counter()
        assert request.profile is not None
        if self.check_ is None:
            return [Verdict(stage=request.stage, label=Label.UNDECIDED, tier=Tier.FAST,
                            checker=CHECKER, parse_ok=False,
                            explanation=f"the profile check could not load: {self.load_error}")]
        op = self.settings.operating_point.value
        art = self.check_.artifact
        threshold = self.settings.threshold if self.settings.threshold is not None else art.thresholds[op]
        unsafe, match, approved = self.check_.check(
            request.profile.text, request.last_user_text, request.guidelines,
            threshold=threshold, match_threshold=self.settings.guideline_threshold,
            library=self.settings.library)
        ms = (time.perf_counter() - start) * 1000
        out = []
        if approved is not None:
            t = self.settings.guideline_threshold
            t = art.match_thresholds(with_scorer=self.settings.library)[0] if t is None else t
            fired = unsafe and match.route == "approved"
            out.append(self._verdict(request, MATCHER, approved, fired, None, t, ms))
        if match.route == "scorer":
            out.append(self._verdict(request, CHECKER, match, unsafe, match.score, threshold, ms))
        return out

    @staticmethod
    def _verdict(request: CheckRequest, checker: str, m: ProfileMatch, unsafe: bool,
                 score: float | None, threshold: float, ms: float) -> Verdict:
        where = f"library attribute {m.attribute}, " if m.attribute else ""
        what = (f'"{m.guideline}" ({where}similarity {m.similarity:.2f}'
                + (f", P(unsafe) {score:.2f})" if score is not None else ")"))
        text = (f"for this user's profile, decline: {what}" if unsafe
                else f"no profile guideline applies (closest: {what})")
        return Verdict(stage=request.stage, label=Label.UNSAFE if unsafe else Label.SAFE,
                       categories=[CATEGORY] if unsafe else [], score=m.score,
                       category_scores={CATEGORY: m.score}, tier=Tier.FAST, checker=checker,
                       explanation=text, raw=m.model_dump_json(), latency_ms=ms,
                       threshold=threshold if checker == CHECKER else None)

    async def check(self, request: CheckRequest, settings: CheckSettings) -> GuardDecision:
        if not self.applies(request, settings):
            return await self.inner.check(request, settings)
        # The profile check decides first, so that a request it blocks costs no guard-model
        # call. When the check cannot call a guard model (the deliberative tier is off), the
        # general guard's fast tier runs at the same time instead of after it: both are encoder
        # passes, and the request waits for the slower one rather than for their sum.
        inner = None if settings.deliberative else asyncio.ensure_future(
            self.inner.check(request, settings))
        try:
            profile = await asyncio.to_thread(self.verdicts, request)
        except BaseException:
            _drop(inner)
            raise
        blocking = [v for v in profile if v.label is Label.UNSAFE]
        undecided = (any(v.label is Label.UNDECIDED for v in profile)
                     and settings.on_undecided is OnUndecided.BLOCK)
        if blocking or undecided:
            _drop(inner)
            if not blocking:
                return GuardDecision(label=Label.UNSAFE, verdicts=profile, decided_by=Tier.FAST,
                                     undecided=True)
            v = blocking[0]
            return GuardDecision(label=Label.UNSAFE, verdicts=profile, decided_by=Tier.FAST,
                                 categories=[CATEGORY], score=v.score,
                                 category_scores={CATEGORY: v.score or 1.0})
        decision = await (inner if inner is not None else self.inner.check(request, settings))
        return decision.model_copy(update={"verdicts": [*profile, *decision.verdicts]})

    async def check_many(self, requests: list[CheckRequest], settings: CheckSettings) -> list[GuardDecision]:
        return [await self.check(r, settings) for r in requests]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
