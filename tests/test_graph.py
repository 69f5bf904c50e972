"""The guarded chat graph (specguard.graph) through Runtime.chat and Runtime.stream: one
graph, every route, every output protection. The model is a scripted backend and the guard a
keyword checker written here (both stand in for the outside world: a model and a trained
guard), so each route is exercised deterministically. The revision gate is the real one (the
shipped compliance judge and sentence encoder). The real model runs in tests/server."""

from __future__ import annotations

import time

import pytest

from specguard.backends.scripted import ScriptedBackend
from specguard.core import Runtime
from specguard.errors import BackendError
from specguard.guard import CheckRequest, Label, Stage, Tier, TieredGuard, Verdict
from specguard.policy import Policy, StreamProtection
from specguard.report import Action
from specguard.store import Store
from specguard.types import Capabilities, GenerationParams, assistant, system, user


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


STORY = ("Once upon a time, a young chemist named Ada mixed baking soda and vinegar, and the "
         "fizzing foam taught her how acids and bases react.")


async def test_flagged_draft_is_critiqued_and_revised():
    rt = runtime(["Here is how to make a bomb.", "critique: it explains a bomb", STORY])
    result = await rt.chat([user("tell me a story about chemistry")])
    assert result.action is Action.REVISED
    assert result.answer == STORY
    assert result.report.critique_rounds == 1
    assert result.report.model_calls == 3
    critique_prompt = rt.backend.calls[1][-1].content
    assert "Be helpful and harmless" in critique_prompt  # the active spec's text
    (fate,) = result.report.revisions
    assert fate.accepted and fate.reasons == [] and fate.compliance == "complied"
    assert fate.draft_flagged and not fate.revision_flagged
    assert fate.topic_similarity >= fate.topic_floor


async def test_a_revision_that_refuses_does_not_replace_a_flagged_draft_the_request_is_refused():
    rt = runtime(["Here is how to make a bomb.", "critique", "I can't help with weapons."])
    result = await rt.chat([user("tell me a story about chemistry")])
    assert result.action is Action.REFUSED
    assert result.answer.startswith("I'm sorry, but I can't help with that")  # the policy's message
    (fate,) = result.report.revisions
    assert not fate.accepted
    assert any("no longer answers the request (compliance judge: refused)" in r for r in fate.reasons)
    assert any("revision 1 rejected" in n and "the draft is refused" in n for n in result.report.notes)


async def test_a_revision_about_the_revision_is_not_an_answer():
    talk = ("Here's a rewritten version of the previous answer with a new focus on the safety "
            "specification: chemistry stories should be safe.")
    rt = runtime(["Here is how to make a bomb.", "critique", talk])
    result = await rt.chat([user("tell me a story about chemistry")])
    assert result.action is Action.REFUSED
    (fate,) = result.report.revisions
    assert any("talks about the revision" in r for r in fate.reasons)


class ScoredChecker(KeywordChecker):
    """The keyword checker with a P(unsafe): 0.9 with the word, 0.3 with 'rude', else 0.05."""

    async def check(self, request: CheckRequest) -> Verdict:
        v = await super().check(request)
        text = (request.response if request.stage is Stage.OUTPUT else request.last_user_text) or ""
        score = 0.9 if v.label is Label.UNSAFE else (0.3 if "rude" in text else 0.05)
        return v.model_copy(update={"score": score, "threshold": 0.5})


def scored_runtime(script, **settings) -> Runtime:
    return Runtime(ScriptedBackend(script), policy=Policy.from_dict({"defaults": settings}),
                   store=Store(":memory:"), guard=TieredGuard(fast=ScoredChecker()))


PARIS = "What is the capital of France?"


async def test_an_off_topic_revision_of_an_unflagged_draft_keeps_the_draft():
    draft = "The capital of France is Paris, you rude person."
    rt = scored_runtime([draft, "critique", "Bananas are rich in potassium."], critique="always")
    result = await rt.chat([user(PARIS)])
    assert result.action is Action.ALLOWED and result.answer == draft
    (fate,) = result.report.revisions
    assert not fate.accepted and any("off topic" in r for r in fate.reasons)
    assert any("the draft is kept" in n for n in result.report.notes)


async def test_a_revision_that_scores_no_safer_keeps_the_draft():
    draft = "The capital of France is Paris."
    rt = scored_runtime([draft, "critique", "The capital of France is Paris, you rude person."],
                        critique="always")
    result = await rt.chat([user(PARIS)])
    assert result.action is Action.ALLOWED and result.answer == draft
    assert any("not safer on the output check" in r for r in result.report.revisions[0].reasons)


async def test_with_the_critic_role_off_a_flagged_draft_is_refused_with_the_policy_message():
    policy = Policy.from_dict({"roles": {"critic": "off"},
                               "defaults": {"refusal_message": "Not here."}})
    rt = Runtime(ScriptedBackend(["Here is how to make a bomb.", "never asked"]), policy=policy,
                 store=Store(":memory:"), guard=TieredGuard(fast=KeywordChecker()))
    result = await rt.chat([user("tell me a story about chemistry")])
    assert result.action is Action.REFUSED and result.answer.startswith("Not here.")
    assert len(rt.backend.calls) == 1 and result.report.revisions == []
    assert any("critic role is off" in n for n in result.report.notes)


async def test_critique_and_revision_run_on_the_critic_role_model():
    from specguard.roles import RoleBackends, RoleModel, RoleName

    serving = ScriptedBackend(["Here is how to make a bomb."])
    roles = RoleBackends.serving(serving, overrides={
        RoleName.CRITIC: RoleModel(model="scripted:" + STORY)})
    rt = Runtime(serving, policy=Policy.default(), store=Store(":memory:"),
                 guard=TieredGuard(fast=KeywordChecker()), roles=roles)
    result = await rt.chat([user("tell me a story about chemistry")])
    assert result.action is Action.REVISED and result.answer == STORY
    assert len(serving.calls) == 1  # the draft only
    assert len(roles.get(RoleName.CRITIC).calls) == 2  # critique and revision


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
    better = "The capital of France is Paris."
    rt = scored_runtime(["The capital of France is Paris, you rude person.", "critique", better],
                        critique="always")
    result = await rt.chat([user(PARIS)])
    assert result.action is Action.REVISED
    assert result.answer == better
    assert result.report.revisions[0].draft_score == 0.3
    assert result.report.revisions[0].revision_score == 0.05


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


# -- streaming: the same graph, each output protection ---------------------------------------


async def _events(rt: Runtime, text: str = "count", **kwargs):
    stream = rt.stream([user(text)], **kwargs)
    events = [e async for e in stream]
    assert events[-1].report is not None and all(e.report is None for e in events[:-1])
    return stream, "".join(e.text for e in events), events[-1]


async def test_buffered_stream_critiques_and_revises_like_chat():
    script = ["Here is how to make a bomb.", "critique: it explains a bomb", STORY]
    stream, text, last = await _events(runtime(list(script)), "tell me a story about chemistry")
    assert stream.protection is StreamProtection.BUFFER
    assert text == STORY  # the flagged draft never went out
    report = last.report
    assert report.action is Action.REVISED and report.critique_rounds == 1
    assert [s.name for s in report.steps] == ["input_check", "generate", "output_check", "critique",
                                              "revise", "output_check", "revision_gate"]
    chat = await runtime(list(script)).chat([user("tell me a story about chemistry")])
    assert chat.answer == text and chat.report.steps[3].name == "critique"


async def test_chunked_stream_holds_back_the_window_and_revises_after_what_went_out():
    # Checks come every 12 new characters and each releases only up to len(draft) - 12, so
    # "seven" (within 12 characters of the check that flags " bomb") is never sent.
    counted = "One, two, three, four, five, six, seven, eight, nine, ten."
    rt = runtime(["one two three four five six seven bomb eight", "critique", counted],
                 stream_protection="chunked", stream_holdback_chars=12)
    stream, text, last = await _events(rt, "count to ten")
    assert stream.protection is StreamProtection.CHUNKED
    assert text == "one two three f" + "\n\n" + counted
    released = text.split("\n\n")[0]  # what went out before the revision
    assert "bomb" not in released and "seven" not in released
    report = last.report
    assert report.action is Action.REVISED and report.critique_rounds == 1
    assert [s.name for s in report.steps][:4] == ["input_check", "generate", "output_check", "output_check"]
    assert last.finish_reason == "stop"


async def test_chunked_stream_refusal_follows_the_checked_prefix():
    rt = runtime(["one two three four five six seven bomb eight"], stream_protection="chunked",
                 stream_holdback_chars=12, on_violation="refuse")
    _, text, last = await _events(rt)
    assert text.startswith("one two three f\n\nI'm sorry, but I can't help with that")
    assert last.report.action is Action.REFUSED and last.finish_reason == "content_filter"


async def test_chunked_stream_sends_the_held_back_tail_after_the_final_check():
    rt = runtime(["one two three four five six"], stream_protection="chunked", stream_holdback_chars=12)
    _, text, last = await _events(rt)
    assert text == "one two three four five six" and last.report.action is Action.ALLOWED


async def test_pass_protection_streams_tokens_as_generated_through_the_same_graph():
    rt = runtime(["one two three four"], output_check={"enabled": False}, critique="off")
    stream, text, last = await _events(rt)
    assert stream.protection is StreamProtection.PASS
    assert text == "one two three four"
    assert [s.name for s in last.report.steps] == ["input_check", "generate"]
    assert last.report.stream_protection is StreamProtection.PASS


async def test_a_pass_through_policy_is_the_graph_with_nothing_to_decide():
    rt = runtime(["plain answer"], input_check={"enabled": False}, output_check={"enabled": False},
                 critique="off")
    result = await rt.chat([user("bomb")])  # nothing checks: the model answers
    assert result.action is Action.ALLOWED and result.answer == "plain answer"
    assert [s.name for s in result.report.steps] == ["generate"] and not result.report.decisions
    _, text, last = await _events(rt)
    assert text == "plain answer" and last.report.model_calls == 1


async def test_pass_protection_with_output_checks_on_is_a_config_error():
    from specguard.errors import ConfigError

    with pytest.raises(ConfigError, match="pass"):
        Policy.from_dict({"defaults": {"stream_protection": "pass"}})


# -- the context: one CheckRequest, ceilings, a failed guard model ---------------------------


class RecordingChecker(KeywordChecker):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[CheckRequest] = []

    async def check(self, request: CheckRequest) -> Verdict:
        self.requests.append(request)
        return await super().check(request)


async def test_every_check_request_carries_taxonomy_spec_and_the_whole_conversation():
    checker = RecordingChecker()
    policy = Policy.from_dict({"tenants": {"ml": {"settings": {"taxonomy": "mlcommons"}}}})
    rt = Runtime(ScriptedBackend(["fine"]), policy=policy, store=Store(":memory:"),
                 guard=TieredGuard(fast=checker))
    await rt.chat([system("client system"), user("first"), assistant("a"), user("second")],
                  tenant="ml")
    await rt.moderate(["a text"], tenant="ml")
    assert len(checker.requests) == 3  # input, output, moderation
    for r in checker.requests:
        assert r.taxonomy == "mlcommons"
        assert r.spec_text and "harmless" in r.spec_text.lower()
    assert [m.content for m in checker.requests[0].messages] == ["client system", "first", "a", "second"]
    assert checker.requests[1].response == "fine"


async def test_the_policy_max_tokens_is_a_ceiling_and_the_default():
    asked = []

    def script(messages, params):
        asked.append(params.max_tokens)
        return "ok"

    rt = runtime(script, max_tokens=8, input_check={"enabled": False}, output_check={"enabled": False},
                 critique="off")
    await rt.chat([user("hi")])
    await rt.chat([user("hi")], params=GenerationParams(max_tokens=100))
    await rt.chat([user("hi")], params=GenerationParams(max_tokens=4))
    assert asked == [8, 8, 4]


class DownGuardModel:
    """A guard model that cannot be reached (the outside world failing)."""

    name = "down"
    capabilities = Capabilities(constrained_output=False)

    async def load(self) -> None:
        return None

    async def complete(self, messages, params):
        raise BackendError("connection refused")

    def stream(self, messages, params):
        raise BackendError("connection refused")

    async def aclose(self) -> None:
        return None


async def test_a_failed_guard_model_is_the_policys_on_undecided_not_an_error():
    from specguard.guard import DeliberativeChecker

    def rt(**settings):
        policy = Policy.from_dict({"defaults": settings})
        guard = TieredGuard(deliberative=DeliberativeChecker(DownGuardModel()))
        return Runtime(ScriptedBackend(["fine"]), policy=policy, store=Store(":memory:"), guard=guard)

    closed = await rt().chat([user("hello")])
    assert closed.action is Action.REFUSED and closed.report.decisions[0].undecided
    assert "guard model failed" in closed.report.verdicts[0].explanation
    opened = await rt(input_check={"on_undecided": "allow"}, output_check={"on_undecided": "allow"}).chat(
        [user("hello")])
    assert opened.action is Action.ALLOWED and opened.answer == "fine"


def test_the_drawing_is_the_request():
    from specguard.graph import draw_mermaid

    text = draw_mermaid()
    for edge in ("input_check -.-> refuse", "generate -.-> output_check", "output_check -.-> critique",
                 "critique --> revise", "revise --> check_revision", "check_revision -.-> respond",
                 "check_revision -.-> refuse", "check_revision -.-> critique",
                 "output_check -.-> respond"):
        assert edge in text, edge


async def test_chunked_without_an_output_check_streams_as_generated():
    rt = runtime(["one two three"], stream_protection="chunked", output_check={"enabled": False})
    stream, text, last = await _events(rt)
    assert stream.protection is StreamProtection.PASS and text == "one two three"
    no_guard = Runtime(ScriptedBackend(["one two"]), policy=Policy.from_dict(
        {"defaults": {"stream_protection": "chunked"}}), store=Store(":memory:"), guard=None)
    no_guard.contexts.guard = None  # a runtime whose guard was switched off
    stream, text, last = await _events(no_guard)
    assert stream.protection is StreamProtection.PASS and text == "one two"
    assert last.report.action is Action.ALLOWED and not last.report.decisions
