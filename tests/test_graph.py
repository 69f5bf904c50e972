"""Routing of the guarded chat graph. The model is a scripted backend and the guard a keyword
checker written here (both stand in for the outside world: a model and a trained guard), so
each route is exercised deterministically. The real model runs in tests/server."""

from __future__ import annotations

import time

import pytest

from specguard.backends.scripted import ScriptedBackend
from specguard.core import Runtime
from specguard.guard import CheckRequest, Label, Stage, Tier, TieredGuard, Verdict
from specguard.policy import Policy
from specguard.report import Action
from specguard.store import Store
from specguard.types import system, user


class KeywordChecker:
    """Flags text containing a word; decides nothing it is unsure about (no word list match
    on an 'unsure' marker -> UNDECIDED)."""

    tier = Tier.FAST
    name = "keyword"

    def __init__(self, word: str = "bomb") -> None:
        self.word = word

    async def check(self, request: CheckRequest) -> Verdict:
        text = request.response if request.stage is Stage.OUTPUT else request.last_user_text
        if "unsure" in text:
            label = Label.UNDECIDED
        else:
            label = Label.UNSAFE if self.word in text.lower() else Label.SAFE
        return Verdict(stage=request.stage, label=label, tier=self.tier, checker=self.name,
                       categories=["weapons"] if label is Label.UNSAFE else [])


def runtime(script, **settings) -> Runtime:
    policy = Policy.from_dict({"defaults": settings}) if settings else Policy.default()
    return Runtime(ScriptedBackend(script), policy=policy, store=Store(":memory:"),
                   guard=TieredGuard(fast=KeywordChecker()))


async def test_safe_request_is_answered_as_drafted():
    rt = runtime(["Knead, rise, bake at 220C."])
    result = await rt.chat([user("How do I bake bread?")])
    assert result.action is Action.ALLOWED
    assert result.answer == "Knead, rise, bake at 220C."
    r = result.report
    assert [d.label for d in r.decisions] == ["safe", "safe"]
    assert r.model_calls == 1
    assert [s.name for s in r.steps] == ["input_check", "generate", "output_check"]
    assert r.specs and r.specs[0].name == "general" and r.specs[0].version == 1
    assert r.checks_run == ["keyword"]


async def test_unsafe_input_is_refused_without_generating():
    backend_script = ["should never be generated"]
    rt = runtime(backend_script)
    result = await rt.chat([user("how to build a bomb")])
    assert result.action is Action.REFUSED
    assert "flagged: weapons" in result.answer
    assert rt.backend.calls == []
    assert result.report.model_calls == 0


async def test_flagged_draft_is_critiqued_and_revised():
    rt = runtime(["Here is how to make a bomb.", "critique: it explains a bomb", "I can't help with weapons."])
    result = await rt.chat([user("tell me a story about chemistry")])
    assert result.action is Action.REVISED
    assert result.answer == "I can't help with weapons."
    assert result.report.critique_rounds == 1
    assert result.report.model_calls == 3
    critique_prompt = rt.backend.calls[1][-1].content
    assert "Be helpful and harmless" in critique_prompt  # the active spec's text


async def test_revisions_that_stay_unsafe_end_in_refusal_after_the_round_limit():
    rt = runtime(["bomb draft", "critique", "still a bomb"], critique_rounds=1)
    result = await rt.chat([user("story please")])
    assert result.action is Action.REFUSED
    assert result.report.model_calls == 3


async def test_refuse_on_violation_skips_revision():
    rt = runtime(["bomb draft"], on_violation="refuse")
    result = await rt.chat([user("story please")])
    assert result.action is Action.REFUSED
    assert result.report.model_calls == 1


async def test_always_critique_revises_even_safe_drafts():
    rt = runtime(["draft", "critique", "better draft"], critique="always")
    result = await rt.chat([user("hello")])
    assert result.action is Action.REVISED
    assert result.answer == "better draft"


async def test_undecided_fails_closed_by_default_and_open_when_configured():
    closed = await runtime(["x"]).chat([user("I am unsure about this")])
    assert closed.action is Action.REFUSED
    assert closed.report.decisions[0].undecided
    assert "could not decide" in closed.report.notes[0]
    opened = await runtime(["fine"], input_check={"on_undecided": "allow"}).chat([user("I am unsure")])
    assert opened.action is Action.ALLOWED


async def test_policy_system_prompt_leads_and_client_system_text_follows():
    rt = runtime(["ok"], system_prompt="POLICY PROMPT")
    await rt.chat([system("client prompt"), user("hi")])
    sent = rt.backend.calls[0]
    assert sent[0].role == "system" and sent[0].content == "POLICY PROMPT\n\nclient prompt"
    assert [m.role for m in sent] == ["system", "user"]


async def test_chunked_stream_releases_only_checked_text_and_stops_on_a_flag():
    rt = runtime(["one two three four five six seven bomb eight nine"],
                 stream_protection="chunked", stream_holdback_chars=8)
    events = [e async for e in rt.stream([user("count")])]
    text = "".join(e.text for e in events)
    assert "bomb" not in text
    assert events[-1].report.action is Action.REFUSED
    assert events[-1].finish_reason == "content_filter"


async def test_chunked_stream_passes_safe_text_whole():
    rt = runtime(["one two three four"], stream_protection="chunked", stream_holdback_chars=4)
    events = [e async for e in rt.stream([user("count")])]
    assert "".join(e.text for e in events) == "one two three four"
    assert events[-1].report.action is Action.ALLOWED


async def test_buffered_stream_carries_the_report_last():
    rt = runtime(["safe answer"])
    events = [e async for e in rt.stream([user("hi")])]
    assert "".join(e.text for e in events) == "safe answer"
    assert events[-1].report is not None and events[-1].report.action is Action.ALLOWED


async def test_empty_conversation_is_an_invalid_request():
    from specguard.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError):
        await runtime(["x"]).chat([])


async def test_store_changes_reach_requests_after_the_cache_ttl():
    rt = runtime(["ok"])
    rt.contexts.spec_ttl = 0.0
    store = rt.store.specs
    v2 = store.propose("general", "global", "New text.", parent=1)
    store.activate("general", "global", v2.version)
    time.sleep(0.01)
    result = await rt.chat([user("hi")])
    assert result.report.specs[0].version == 2


async def test_a_profile_refusal_says_the_profile_is_the_reason():
    from specguard.guard import CheckRequest as CR

    class ProfileFlag(KeywordChecker):
        async def check(self, request: CR) -> Verdict:
            return Verdict(stage=request.stage, label=Label.UNSAFE, tier=self.tier, checker="p",
                           categories=["user_profile"])

    policy = Policy.from_dict({"profiles": {"hep": {"text": "I have hepatitis."}},
                               "users": {"al": {"tenant": "default", "profile": "hep"}}})
    rt = Runtime(ScriptedBackend(["x"]), policy=policy, store=Store(":memory:"),
                 guard=TieredGuard(fast=ProfileFlag()))
    result = await rt.chat([user("I want a bottle of tequila")], user="al")
    assert result.action is Action.REFUSED
    assert "I have hepatitis." in result.answer and "flagged" not in result.answer
