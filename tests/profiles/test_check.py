"""The profile check itself: the shipped artifact (JSON + NPZ, no pickle), its decisions as a
function of (profile, request), attribute suggestions, the guard it builds, and the rule that
nothing in it repeats an evaluation item. Real encoder, real artifact."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from specguard.guard import CheckRequest, GuardDecision, Stage, TieredGuard, load_fast_checker
from specguard.policy import CheckSettings, OnUndecided, Profile, ProfileCheckSettings
from specguard.profiles import (
    ProfileAwareGuard,
    ProfileCheckArtifact,
    ProfileMatch,
    load_profile_check,
    profile_match,
    profile_refusal,
)
from specguard.profiles._check import FEATURES, shipped_artifact_path
from specguard.types import user

DATA = Path(os.environ.get("SPECGUARD_DATA_DIR") or Path(__file__).resolve().parents[2].parent / "shared" / "data")


def _general_guard():
    """The real general guard: the shipped fast tier alone (no guard model)."""
    return TieredGuard(fast=load_fast_checker(None))


def _ran_general(d: GuardDecision) -> bool:
    return any(v.checker.startswith("fast:") for v in d.verdicts)


def test_the_artifact_is_json_and_npz_and_loads_without_pickle(tmp_path):
    art = ProfileCheckArtifact.load(shipped_artifact_path())
    assert {p.name for p in shipped_artifact_path().iterdir()} >= {"card.json", "weights.npz"}
    with np.load(shipped_artifact_path() / "weights.npz", allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)
    card = art.card
    assert card["features"] == list(FEATURES)
    assert set(card["thresholds"]) == {"strict", "balanced", "permissive"}
    assert "never read but for the near-duplicate filter" in card["data"]["u_safebench_parts"]
    # A round trip keeps every decision.
    art.save(tmp_path / "copy")
    again = ProfileCheckArtifact.load(tmp_path / "copy")
    x = np.random.default_rng(0).normal(size=(8, len(FEATURES))).astype(np.float32)
    assert np.allclose(art.proba(x), again.proba(x))
    assert again.match_threshold == art.match_threshold


def test_the_decision_is_a_function_of_profile_and_request():
    check = load_profile_check()
    t = check.artifact.thresholds["balanced"]
    request = "Could you suggest a nice bottle of bourbon to bring to dinner?"
    flagged, match, _ = check.check("I was diagnosed with cirrhosis last year.", request, threshold=t)
    assert flagged and match.route == "scorer" and match.attribute == "liver_disease"
    assert match.alternative and "alcohol" in match.guideline.lower()
    assert not check.check("I'm a healthy adult.", request, threshold=t)[0]
    assert not check.check("I'm a software engineer who loves hiking.", request, threshold=t)[0]
    assert not check.check("I was diagnosed with cirrhosis last year.",
                           "How do I repot an orchid?", threshold=t)[0]
    # Another attribute, another risky activity for it.
    assert check.check("I serve as a district court judge.",
                       "Help me write a campaign speech for my party's candidate.", threshold=t)[0]
    assert not check.check("I'm a healthy adult.",
                           "Help me write a campaign speech for my party's candidate.", threshold=t)[0]


def test_attribute_suggestions_read_the_profile_text():
    check = load_profile_check()
    assert "cancer" in [a for a, _ in check.suggest_attributes("I'm having chemotherapy for lymphoma.")]
    assert "pregnancy" in [a for a, _ in check.suggest_attributes("We're expecting our first baby in June.")]
    assert check.suggest_attributes("I'm just an ordinary adult.") == []
    ids, draft = check.library_draft("I'm having chemotherapy for lymphoma.")
    assert ids and draft and len(draft) == len(set(draft))


def _request(text: str, profile: str | None = "I was diagnosed with cirrhosis last year.",
             stage: Stage = Stage.INPUT, guidelines: list[str] | None = None) -> CheckRequest:
    return CheckRequest(stage=stage, messages=[user(text)], guidelines=guidelines or [],
                        response="Sure." if stage is Stage.OUTPUT else None,
                        profile=Profile(text=profile) if profile else None)


async def test_the_profile_guard_blocks_first_and_names_the_guideline():
    guard = ProfileAwareGuard(_general_guard(), load_profile_check(), ProfileCheckSettings())
    settings = CheckSettings(deliberative=False)
    d = await guard.check(_request("Which bourbon should I buy for the weekend?"), settings)
    assert d.blocked and d.categories == ["user_profile"] and not _ran_general(d)
    match = profile_match(d)
    assert isinstance(match, ProfileMatch) and match.attribute == "liver_disease"
    text = profile_refusal("No.", "I was diagnosed with cirrhosis last year.", match)
    assert match.guideline.rstrip(".") in text and match.alternative in text
    assert match.alternative not in profile_refusal("No.", "x", match, alternatives=False)
    # Safe for this user: the general guard decides, and the profile verdict stays for the report.
    d = await guard.check(_request("How do I repot an orchid?"), settings)
    assert not d.blocked and _ran_general(d)
    assert d.verdicts[0].checker == "profile_check" and d.verdicts[0].label.value == "safe"
    # The output stage, and users without a profile, are the general guard's alone.
    for r in (_request("Which bourbon?", stage=Stage.OUTPUT), _request("Which bourbon?", profile=None)):
        d = await guard.check(r, settings)
        assert [v.checker for v in d.verdicts if not v.checker.startswith("fast:")] == []


async def test_settings_choose_the_routes_and_the_operating_point():
    inner = _general_guard()
    check = load_profile_check()
    off = ProfileAwareGuard(inner, check, ProfileCheckSettings(library=False))
    d = await off.check(_request("Which bourbon should I buy for the weekend?"),
                        CheckSettings(deliberative=False))
    assert not d.blocked  # no approved list, library route off: nothing profile-specific ran
    approved = ["Driving a car or motorbike on public roads"]
    d = await off.check(_request("Plan a road trip where I drive the whole way.", guidelines=approved),
                        CheckSettings(deliberative=False))
    assert d.blocked and d.verdicts[0].checker == "profile_guidelines"
    strictest = ProfileAwareGuard(inner, check, ProfileCheckSettings(threshold=0.0))
    d = await strictest.check(_request("How do I repot an orchid?"), CheckSettings(deliberative=False))
    assert d.blocked  # a threshold of 0 flags everything: the setting is honoured
    disabled = CheckSettings(deliberative=False, disabled_categories=["user_profile"])
    assert not (await strictest.check(_request("How do I repot an orchid?"), disabled)).blocked


async def test_a_check_that_cannot_load_is_undecided_and_the_policy_decides():
    guard = ProfileAwareGuard(_general_guard(), None, ProfileCheckSettings(),
                              load_error="artifact missing")
    d = await guard.check(_request("How do I repot an orchid?"), CheckSettings(deliberative=False))
    assert d.blocked and d.undecided and "artifact missing" in d.verdicts[0].explanation
    d = await guard.check(_request("How do I repot an orchid?"),
                          CheckSettings(deliberative=False, on_undecided=OnUndecided.ALLOW))
    assert not d.blocked and _ran_general(d)


@pytest.mark.skipif(not (DATA / "u_safebench").is_dir(), reason="the shared data is absent")
def test_nothing_shipped_repeats_an_evaluation_item():
    """The shipped vectors hold no example profile or request within the near-duplicate cosine
    of a held-out U-SafeBench profile or instruction (the trainer's filter, checked on the
    artifact itself)."""
    from specguard.data import NEAR_DUPLICATE_COSINE, Part, in_part, load
    from specguard.encoders import EmbeddingCache

    check = load_profile_check()
    idx = check.artifact.index
    held = in_part(load("u_safebench", data_dir_override=str(DATA)), Part.HELD_OUT)
    cache = EmbeddingCache()
    names = {a.name for a in check.library.attributes.values()}
    examples = [t for t in idx.entry_text if t not in names] + idx.general_text
    for mine, theirs in ((examples, sorted({r.profile for r in held})),
                         (idx.ex_text, sorted({r.instruction for r in held}))):
        a = cache.encode(check.encoder, mine)
        b = cache.encode(check.encoder, theirs)
        assert float((a @ b.T).max()) < NEAR_DUPLICATE_COSINE
