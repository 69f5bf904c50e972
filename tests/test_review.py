"""Asynchronous review (`review: async`, specguard.review): the request is answered with the fast
tier's decision; the uncertain case goes to the deliberative role off the request path; its
verdict lands in the audit log (a real SQLite store) and the conversation's record, and the
next turn of the same conversation is refused when the verdict was unsafe.

The serving model and the deliberative guard model are scripted backends (they stand in for a
model server and a hosted guard model); the fast tier is a checker written here that is unsure
of everything it sees (score 0.5, inside the escalation band)."""

from __future__ import annotations

import pytest

from specguard.backends.scripted import ScriptedBackend
from specguard.core import Runtime
from specguard.guard import CheckRequest, DeliberativeChecker, Label, Tier, TieredGuard, Verdict
from specguard.policy import Policy
from specguard.report import Action
from specguard.review import ReviewStatus, thread_keys
from specguard.store import Store
from specguard.types import assistant, user

UNSAFE = "- Safety Assessment: unsafe\n- Categories: violence,aiding_and_abetting,incitement\n- Explanation: veiled threat."
SAFE = "- Safety Assessment: safe\n- Categories: none\n- Explanation: harmless."


class UnsureChecker:
    """Fast tier double: P(unsafe) 0.5 for everything (inside the default band 0.2-0.8), under
    its 0.6 threshold, so it would let the text through."""

    tier = Tier.FAST
    name = "unsure"

    async def check(self, request: CheckRequest) -> Verdict:
        return Verdict(stage=request.stage, label=Label.SAFE, score=0.5, threshold=0.6,
                       tier=self.tier, checker=self.name)


def runtime(tmp_path, guard_answers, review="async") -> Runtime:
    policy = Policy.from_dict({"defaults": {
        "input_check": {"review": review}, "output_check": {"enabled": False},
        "critique": "off"}})
    guard = TieredGuard(fast=UnsureChecker(),
                        deliberative=DeliberativeChecker(ScriptedBackend(guard_answers)))
    return Runtime(ScriptedBackend(["Sure, here you go."]), policy=policy,
                   store=Store(str(tmp_path / "review.db")), guard=guard)


async def test_the_answer_does_not_wait_and_a_later_turn_is_refused_on_the_verdict(tmp_path):
    rt = runtime(tmp_path, [UNSAFE])
    first = [user("Tell me where my neighbour parks at night, I have a surprise for him.")]
    result = await rt.chat(first)
    assert result.action is Action.ALLOWED  # answered on the fast tier's decision
    d = result.report.decisions[0]
    assert d.decided_by is Tier.FAST and not d.escalated
    (pending,) = result.report.reviews
    assert pending.status is ReviewStatus.PENDING and pending.fast_label is Label.SAFE
    assert any("reviews it asynchronously" in n for n in result.report.notes)

    await rt.reviews.join()
    (done,) = rt.thread_reviews(first)
    assert done.status is ReviewStatus.DONE and done.label is Label.UNSAFE
    audit = [e for e in rt.store.audit() if e["action"] == "review.verdict"]
    assert len(audit) == 1 and audit[0]["target"] == f"thread:{done.thread}"
    assert audit[0]["detail"]["label"] == "unsafe" and audit[0]["tenant"] == "default"

    later = [*first, assistant(result.answer), user("Great, and what time does he leave?")]
    refused = await rt.chat(later)
    assert refused.action is Action.REFUSED
    assert "flagged: violence,aiding_and_abetting,incitement" in refused.answer
    assert any("found unsafe on asynchronous review" in n for n in refused.report.notes)
    assert [r.label for r in refused.report.reviews] == [Label.UNSAFE]
    assert len(rt.backend.calls) == 1  # the refused turn never reached the model


async def test_another_conversation_and_a_safe_verdict_are_not_held_against_anyone(tmp_path):
    rt = runtime(tmp_path, [SAFE, UNSAFE])
    first = [user("How do I sharpen a kitchen knife?")]
    await rt.chat(first)
    await rt.reviews.join()
    assert rt.thread_reviews(first)[0].label is Label.SAFE
    follow = await rt.chat([*first, assistant("Sure, here you go."), user("And a cleaver?")])
    assert follow.action is Action.ALLOWED
    assert follow.report.reviews[0].label is Label.SAFE  # the thread's record is in the report
    await rt.reviews.join()
    other = [user("Something else entirely")]
    result = await rt.chat(other)
    assert result.action is Action.ALLOWED
    # only its own review is on its thread, none of the first conversation's
    assert [r.request_id for r in rt.thread_reviews(other)] == [result.report.request_id]


async def test_the_same_words_from_another_user_are_another_thread():
    msgs = [user("hello")]
    assert thread_keys("t", "a", msgs) != thread_keys("t", "b", msgs)
    assert thread_keys("t", "a", msgs)[0] == thread_keys("t", "a", [*msgs, assistant("x")])[0]


async def test_inline_review_waits_for_the_deliberative_verdict(tmp_path):
    rt = runtime(tmp_path, [UNSAFE], review="inline")
    result = await rt.chat([user("Tell me where my neighbour parks at night.")])
    assert result.action is Action.REFUSED and result.report.decisions[0].escalated
    assert result.report.reviews == [] and rt.reviews.pending == 0


@pytest.mark.parametrize("answer", ["I cannot tell.", ""])
async def test_a_review_that_cannot_be_parsed_is_undecided_and_the_policy_decides(tmp_path, answer):
    rt = runtime(tmp_path, [answer])
    first = [user("Is this fine?")]
    await rt.chat(first)
    await rt.reviews.join()
    (record,) = rt.thread_reviews(first)
    # on_undecided is block by default: an unparseable review counts against the thread
    assert record.status is ReviewStatus.DONE and record.label is Label.UNSAFE
