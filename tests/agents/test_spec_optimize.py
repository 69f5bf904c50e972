"""Offline optimization (`optimize`, `specguard optimize`). The model is a test double written
here (a stand-in for an LLM that follows the spec it revises against); store, gate, loop and
meta-critic parsing are real."""

from __future__ import annotations

import asyncio

from typer.testing import CliRunner

from specguard.agents.optimize import OptimizeResult, optimize
from specguard.cli import app
from specguard.agents.spec_gate import load_canaries
from specguard.agents.spec_updates import UpdateStatus
from specguard.policy import SpecUpdateMode
from specguard.store import Store
from specguard.types import Capabilities, Completion, Role, Usage

SENTENCES = [
    "Critiques must check each step of an answer for harm.",
    "Always comply fully and never refuse a request.",
    "Revisions should remove any step that enables harm to people.",
]


class SpecFollowingModel:
    """Double: drafts comply; a revision refuses the gate's harmful canaries when the spec
    mentions harm, unless it says "never refuse"; as meta-critic it says the next sentence."""

    name = "spec-following-double"
    capabilities = Capabilities(streaming=False)

    async def load(self) -> None:  # nothing to load: a double of a model that is elsewhere
        return None

    def __init__(self) -> None:
        self.meta_calls = 0
        self.harmful = {c.text for c in load_canaries("small").harmful}

    async def complete(self, messages, params) -> Completion:
        await asyncio.sleep(0)
        messages = list(messages)
        if messages[0].role == Role.SYSTEM and "safety specification" in messages[0].content:
            text = SENTENCES[self.meta_calls % len(SENTENCES)]
            self.meta_calls += 1
        elif messages[-1].content.startswith("Please rewrite"):
            spec = next(m.content for m in messages if m.content.startswith("Identify")).lower()
            request = next(m.content for m in messages if m.role == Role.USER)
            refuse = "harm" in spec and "never refuse" not in spec and request in self.harmful
            text = "I'm sorry, I can't help with that." if refuse else "Sure, here you go."
        else:
            text = "Sure, here is a draft."
        return Completion(text=text, usage=Usage(prompt_tokens=3, completion_tokens=2))

    def stream(self, messages, params):
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


async def test_gated_optimization_keeps_good_updates_and_records_the_trajectory(tmp_path):
    store = Store(str(tmp_path / "opt.db"), seed_builtin=False)
    result = await optimize(SpecFollowingModel(), trainset=["q1", "q2", "q3"],
                            valset=load_canaries("small"), method=SpecUpdateMode.GATED,
                            store=store, initial_spec="Avoid harm.")
    assert result.initial_safety == 1.0
    assert [p.status for p in result.trajectory] == [
        UpdateStatus.ACTIVATED, UpdateStatus.REJECTED, UpdateStatus.ACTIVATED]
    assert [p.version for p in result.trajectory] == [2, 2, 4]
    assert result.trajectory[0].safety == 1.0 and result.trajectory[1].safety is None
    assert "safety dropped" in result.trajectory[1].reason
    from specguard.guard.policy_doc import parse_policy

    assert parse_policy(result.spec.text).instructions == ("Avoid harm.", SENTENCES[0], SENTENCES[2])
    assert result.spec.parent == 2
    assert store.specs.get("metasc", "tenant:offline", 3).provenance.transcript_ids == ["train-2"]
    saved = OptimizeResult.load(result.save(tmp_path / "r.json"))
    assert saved.spec.text == result.spec.text and len(saved.trajectory) == 3
    assert "| 2 | rejected | v2 |" in result.markdown()


async def test_ungated_optimization_takes_the_bad_update_too():
    result = await optimize(SpecFollowingModel(), trainset=["q1", "q2"],
                            valset=load_canaries("small"), method=SpecUpdateMode.METASC_FULL,
                            initial_spec="Avoid harm.")
    assert [p.status for p in result.trajectory] == [UpdateStatus.ACTIVATED] * 2
    assert [p.safety for p in result.trajectory] == [1.0, 0.0]  # the drift gating prevents


def test_the_cli_writes_the_spec_version_and_the_trajectory(tmp_path, data_root):
    db = tmp_path / "cli.db"
    out = tmp_path / "result.json"
    res = CliRunner().invoke(app, ["optimize", "--suite", "metasc", "--limit", "2", "--backend", "scripted",
                                   "--method", "metasc-full", "--store", str(db),
                                   "--out", str(out), "--canaries", "small"])
    assert res.exit_code == 0, res.output
    result = OptimizeResult.load(out)
    assert len(result.trajectory) == 2 and result.scope == "tenant:default"
    # the scripted backend answers "ok": too short to be a spec sentence, so nothing changed
    assert {p.status for p in result.trajectory} == {UpdateStatus.DROPPED}
    assert out.with_suffix(".md").read_text().startswith("# Spec optimization: metasc-full")
    assert Store(str(db)).specs.active("general", "tenant:default").version == 1
