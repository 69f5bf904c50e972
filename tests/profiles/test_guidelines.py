"""Deriving, parsing, versioning and matching per-profile guidelines."""

from __future__ import annotations

from specguard.backends.scripted import ScriptedBackend
from specguard.policy import GuidelineUse, Profile
from specguard.profiles import (
    GuidelineMatcher,
    load_library,
    load_profile_check,
    GuidelineStatus,
    derive_guidelines,
    guideline_prompt,
    parse_guidelines,
    remedy_prompt,
)
from specguard.profiles._derive import parse_guidelines_json
from specguard.store import Store


def test_parse_keeps_list_items_only_deduplicated_and_capped():
    text = "Sure, here you go:\n1. Drinking alcohol.\n2) eating raw fish\n- drinking Alcohol\n* ok\nThanks!"
    assert parse_guidelines(text) == ["Drinking alcohol", "eating raw fish"]
    assert parse_guidelines("\n".join(f"- item number {i}" for i in range(20)), max_items=3) == [
        "item number 0", "item number 1", "item number 2"]


def test_parse_json_keeps_the_complete_items_of_a_truncated_answer():
    assert parse_guidelines_json('{"activities": ["drinking alcohol", "smoking", "trunc') == [
        "drinking alcohol", "smoking"]
    assert parse_guidelines_json("no json here") == []


async def test_derive_asks_the_model_about_this_profile():
    backend = ScriptedBackend(["- drinking alcohol\n- skipping insulin doses"])
    profile = Profile(text="I have diabetes.", attributes={"health_conditions": ["diabetes"]})
    assert await derive_guidelines(backend, profile) == ["drinking alcohol", "skipping insulin doses"]
    sent = backend.calls[0][-1].content
    assert "User profile: I have diabetes." in sent and "health conditions: diabetes" in sent
    assert "I have diabetes." in guideline_prompt(profile)[0].content


def test_remedy_prompt_is_the_papers_sentence():
    assert remedy_prompt("I have hepatitis.", ["drinking alcohol", "acetaminophen"]) == (
        "Consider I have hepatitis. You may decline if it raises safety concerns, including: "
        "drinking alcohol; acetaminophen.")
    assert remedy_prompt("I am 15 years old", []) == (
        "Consider I am 15 years old. You may decline if it raises safety concerns.")


def test_versions_drafts_and_approval(tmp_path):
    store = Store(str(tmp_path / "g.db"), seed_builtin=False)
    g = store.guidelines
    v1 = g.propose("hep", ["a"], source="model:x", profile_text="I have hepatitis.", actor="t")
    assert g.current("hep") is None and g.current("hep", GuidelineUse.LATEST).version == 1
    g.approve("hep", v1.version, actor="admin")
    v2 = g.propose("hep", ["a", "b"], source="admin", profile_text="I have hepatitis.", actor="t")
    assert g.current("hep").version == 1 and g.current("hep", GuidelineUse.LATEST).version == 2
    g.approve("hep", v2.version, actor="admin")
    assert [s.status for s in g.history("hep")] == [GuidelineStatus.RETIRED, GuidelineStatus.APPROVED]
    assert g.current("hep", GuidelineUse.OFF) is None
    assert [e["action"] for e in store.audit()][:2] == ["guidelines.approve", "guidelines.propose"]
    store.close()


def test_matcher_is_semantic_not_lexical():
    """The matcher compares meanings: it fires on a request that shares no word with the
    guideline, and not on one that shares words but not the activity."""
    m = GuidelineMatcher(load_profile_check())
    guideline = ["drinking alcohol"]
    assert m.matches("Which tequila goes best in a margarita?", guideline)
    assert m.matches("Which wine should I open with dinner tonight?", guideline)
    assert not m.matches("How do I remove an alcohol stain from a wooden table?", ["drinking wine or beer"])
    assert not m.matches("How do I bake bread?", guideline)
    # An admin's own wording (not in the library) is encoded as written.
    own = ["riding motorbikes"]
    assert m.matches("Which motorcycle should I buy for commuting?", own)
    assert not m.matches("Write a poem about the sea.", own)


def test_a_library_guideline_matches_through_its_activity():
    """A library guideline brings its activity: the request is matched against the activity's
    exemplar requests and the activity classifier, not only the guideline's own words."""
    text = load_library().attribute("liver_disease").guidelines[0].decline
    m = GuidelineMatcher(load_profile_check())
    request = "Get me a six-pack of lager for the match."
    assert not m.matches(request, ["Buying or drinking alcohol, written by an admin"])
    assert [g for g, _ in m.matches(request, [text])] == [text]
