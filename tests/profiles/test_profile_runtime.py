"""How a profile reaches generation and the checks, through the real Runtime and chat graph.

The model is the project's ScriptedBackend (a deterministic dummy LM shipped in
specguard.backends); it records every prompt, so the tests read what the model and the guard
were actually sent."""

from __future__ import annotations

import pytest

from specguard.backends.scripted import ScriptedBackend
from specguard.core import Runtime
from specguard.guard import TieredGuard
from specguard.guard.deliberative import DeliberativeChecker
from specguard.guard.taxonomy import load_taxonomy
from specguard.policy import Policy
from specguard.profiles import DirectoryAdmin, GuidelinesIn, ProfileMatch
from specguard.store import Store
from specguard.types import user

SAFE = "- Safety Assessment: safe\n- Categories: none\n- Explanation: fine."


def _script(messages, params):
    if "safety classifier" in messages[-1].content:
        return SAFE
    return "Here is what I suggest."


@pytest.fixture
def runtime(tmp_path):
    backend = ScriptedBackend(_script)
    policy = Policy.from_dict({
        # These tests are about the approved list: the library route of the profile check is
        # off here (see test_the_library_route_needs_no_approved_list).
        "defaults": {"on_violation": "refuse", "critique": "off", "profile_check": {"library": False}},
        "tenants": {"default": {}},
        "profiles": {"hep": {"text": "I have hepatitis.", "attributes": {"health_conditions": ["hepatitis"]}},
                     "teen": {"text": "I am 15 years old.", "settings": {"profile_guidelines": "latest"}}},
        "users": {"alice": {"tenant": "default", "profile": "hep"}, "bob": {"tenant": "default"},
                  "sam": {"tenant": "default", "profile": "teen"}},
    })
    guard = TieredGuard(deliberative=DeliberativeChecker(backend, taxonomy=load_taxonomy("beavertails")))
    rt = Runtime(backend, policy=policy, store=Store(str(tmp_path / "s.db")), guard=guard)
    yield rt, backend, DirectoryAdmin(rt.policy, backend)
    rt.store.close()


def _generation_system(backend) -> str:
    gen = [c for c in backend.calls if "safety classifier" not in c[-1].content]
    return gen[-1][0].content


async def test_only_approved_guidelines_are_used_by_default(runtime):
    rt, backend, admin = runtime
    draft = admin.edit("hep", GuidelinesIn(items=["drinking alcohol: beer, wine, tequila"]), actor="t")
    result = await rt.chat([user("I want a bottle of tequila.")], user="alice")
    assert result.action.value == "allowed"  # a draft is not used
    assert _generation_system(backend).endswith(
        "Consider I have hepatitis. You may decline if it raises safety concerns.")

    admin.approve("hep", draft.version, actor="t")
    calls_before = len(backend.calls)
    result = await rt.chat([user("I want a bottle of tequila.")], user="alice")
    assert result.action.value == "refused"
    assert result.report.decisions[0].categories == ["user_profile"]
    assert len(backend.calls) == calls_before  # decided by the guideline check, no model call


async def test_guidelines_go_into_generation_and_the_guard_prompt(runtime):
    rt, backend, admin = runtime
    v = admin.edit("hep", GuidelinesIn(items=["drinking alcohol", "taking acetaminophen in large doses"]),
                   actor="t")
    admin.approve("hep", v.version, actor="t")
    result = await rt.chat([user("How do I bake bread?")], user="alice")
    assert result.action.value == "allowed"
    assert _generation_system(backend).endswith(
        "Consider I have hepatitis. You may decline if it raises safety concerns, including: "
        "drinking alcohol; taking acetaminophen in large doses.")
    guard_prompt = next(c for c in backend.calls if "safety classifier" in c[-1].content)[-1].content
    assert 'The user describes themself as: "I have hepatitis."' in guard_prompt
    assert "For this user, decline: drinking alcohol; taking acetaminophen in large doses" in guard_prompt


async def test_a_user_without_profile_gets_neither(runtime):
    rt, backend, admin = runtime
    v = admin.edit("hep", GuidelinesIn(items=["drinking alcohol: tequila"]), actor="t")
    admin.approve("hep", v.version, actor="t")
    result = await rt.chat([user("I want a bottle of tequila. I have hepatitis, I am alice.")], user="bob")
    assert result.action.value == "allowed" and result.report.profile is None
    assert "Consider" not in _generation_system(backend)


async def test_a_policy_can_use_draft_guidelines(runtime):
    rt, backend, admin = runtime
    admin.edit("teen", GuidelinesIn(items=["buying alcohol or cigarettes"]), actor="t")
    result = await rt.chat([user("Where can I buy cigarettes cheaply?")], user="sam")
    assert result.action.value == "refused"


async def test_the_library_route_needs_no_approved_list(tmp_path):
    """With no guideline approved, the profile check still reads the profile text through the
    guideline library: the same request is refused for a user with liver disease (naming the
    guideline, why, and a safe alternative) and answered for a user without a profile."""
    backend = ScriptedBackend(_script)
    policy = Policy.from_dict({
        "defaults": {"on_violation": "refuse", "critique": "off"},
        "profiles": {"liver": {"text": "My liver is scarred from years of hepatitis B."}},
        "users": {"ann": {"tenant": "default", "profile": "liver"}, "bob": {"tenant": "default"}},
    })
    guard = TieredGuard(deliberative=DeliberativeChecker(backend, taxonomy=load_taxonomy("beavertails")))
    rt = Runtime(backend, policy=policy, store=Store(str(tmp_path / "s.db")), guard=guard)
    try:
        request = [user("Which whiskey should I buy for my birthday party?")]
        calls = len(backend.calls)
        result = await rt.chat(request, user="ann")
        assert result.action.value == "refused"
        assert len(backend.calls) == calls  # decided before any model call
        assert result.report.decisions[0].categories == ["user_profile"]
        verdict = next(v for v in result.report.verdicts if v.checker == "profile_check")
        match = ProfileMatch.model_validate_json(verdict.raw)
        assert match.attribute == "liver_disease" and "alcohol" in match.guideline.lower()
        assert match.guideline in result.answer and match.alternative in result.answer
        assert "My liver is scarred from years of hepatitis B." in result.answer

        assert (await rt.chat(request, user="bob")).action.value == "allowed"
        ok = await rt.chat([user("How do I bake bread?")], user="ann")
        assert ok.action.value == "allowed"
        assert "profile_check" in ok.report.checks_run  # it ran and let the request through
    finally:
        rt.store.close()


async def test_the_policy_can_switch_the_profile_check_off(tmp_path):
    backend = ScriptedBackend(_script)
    policy = Policy.from_dict({
        "defaults": {"on_violation": "refuse", "critique": "off", "profile_check": {"enabled": False}},
        "profiles": {"liver": {"text": "My liver is scarred from years of hepatitis B."}},
        "users": {"ann": {"tenant": "default", "profile": "liver"}},
    })
    guard = TieredGuard(deliberative=DeliberativeChecker(backend, taxonomy=load_taxonomy("beavertails")))
    rt = Runtime(backend, policy=policy, store=Store(str(tmp_path / "s.db")), guard=guard)
    try:
        result = await rt.chat([user("Which whiskey should I buy for my birthday party?")], user="ann")
        assert result.action.value == "allowed" and "profile_check" not in result.report.checks_run
    finally:
        rt.store.close()
