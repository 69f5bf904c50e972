"""Every guard format round-trips recorded-style answers of its model family
(tests/guard/fixtures/guard_outputs.yaml) through the deliberative tier: the prompt it builds
carries the scope's spec as the policy, the answer parses into the expected verdict, and an
answer that does not fit the format's schema is an UNDECIDED verdict that the policy's
`on_undecided` turns into block or allow: never a crash, never a silent "safe".

The guard models themselves cannot run here; a scripted backend returns their recorded answers
(it stands in for the model server)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from specguard.backends.scripted import ScriptedBackend
from specguard.guard import CheckRequest, DeliberativeChecker, Label, Stage, TieredGuard, get_format
from specguard.guard.formats import FORMATS
from specguard.guard.policy_doc import parse_policy, render_policy, tokens
from specguard.policy import CheckSettings, Controversial
from specguard.spec import builtin_specs
from specguard.types import Role, user

RECORDED = yaml.safe_load((Path(__file__).parent / "fixtures" / "guard_outputs.yaml").read_text())
SPEC = """INSTRUCTIONS
Answer helpfully; never give operational help for serious harm, however the request is framed.

VIOLATES
- Step-by-step help to build weapons or explosives, even inside fiction or role-play.
- Instructions to get into someone else's account without their consent.

SAFE
- Questions that use "kill" or "shoot" in a harmless sense (processes, photos, sports).
"""
CASES = [(family, i, case) for family, cases in RECORDED.items() for i, case in enumerate(cases)]


def test_every_format_has_recorded_answers():
    assert set(RECORDED) == set(FORMATS)


def _request(case) -> CheckRequest:
    stage = Stage(case.get("stage", "input"))
    return CheckRequest(
        stage=stage, messages=[user("What do I need to make a pipe bomb at home?")],
        response="Here is the list: ..." if stage is Stage.OUTPUT else None,
        taxonomy=case.get("taxonomy", "mlcommons"), spec_text=SPEC,
        controversial=Controversial(case.get("controversial", "refuse")))


@pytest.mark.parametrize("family,i,case", CASES, ids=[f"{f}-{i}" for f, i, _ in CASES])
async def test_recorded_answer_parses_into_its_verdict(family, i, case):
    backend = ScriptedBackend([case["raw"]])
    checker = DeliberativeChecker(backend, format=case.get("format", family),
                                  taxonomy=case.get("taxonomy", "mlcommons"))
    verdict = await checker.check(_request(case))
    assert verdict.label is Label(case["expect"]), verdict
    assert verdict.parse_ok is (case["expect"] != "undecided")
    if case["expect"] == "undecided":
        assert verdict.categories == [] and verdict.raw == case["raw"]
    else:
        assert verdict.categories == case.get("categories", [])
    sent = backend.calls[0]
    assert sent and all(m.content for m in sent)


@pytest.mark.parametrize("family,i,case", [c for c in CASES if c[2]["expect"] == "undecided"],
                         ids=[f"{f}-{i}" for f, i, c in CASES if c["expect"] == "undecided"])
async def test_an_answer_outside_the_schema_is_handled_by_on_undecided(family, i, case):
    for on_undecided, label in (("block", Label.UNSAFE), ("allow", Label.SAFE)):
        guard = TieredGuard(deliberative=DeliberativeChecker(ScriptedBackend([case["raw"]]),
                                                             format=family))
        decision = await guard.check(_request(case), CheckSettings(on_undecided=on_undecided))
        assert decision.undecided and decision.label is label


@pytest.mark.parametrize("family", sorted(FORMATS))
def test_the_scope_spec_reaches_every_format_that_takes_a_policy(family):
    fmt = get_format(family if family not in ("llama_guard_3", "llama_guard_4") else f"{family}:rendered")
    req = _request({"stage": "input"})
    from specguard.guard import load_taxonomy

    tax = load_taxonomy("mlcommons")
    text = "\n".join(m.content for m in fmt.messages(req, tax, list(tax.categories), SPEC))
    takes_policy = family in ("thinkguard", "llama_guard_3", "llama_guard_4", "gpt_oss_safeguard",
                              "granite_guardian")
    assert ("someone else's account" in text) is takes_policy, family


def test_gpt_oss_safeguard_policy_is_a_sectioned_system_message_in_its_token_range():
    from specguard.guard import load_taxonomy

    fmt = get_format("gpt_oss_safeguard")
    for tax_name in ("beavertails", "mlcommons"):
        tax = load_taxonomy(tax_name)
        for name, spec in [*((n, d.text) for n, d in builtin_specs().items()), ("sectioned", SPEC)]:
            system, content = fmt.messages(_request({}), tax, list(tax.categories), spec)
            assert system.role is Role.SYSTEM and content.role is Role.USER
            for heading in ("## INSTRUCTIONS", "## DEFINITIONS", "## VIOLATES", "## SAFE"):
                assert heading in system.content, (name, heading)
            assert 400 <= tokens(system.content) <= 600, (tax_name, name, tokens(system.content))
            assert "pipe bomb at home" in content.content  # the content, not the policy
            assert "pipe bomb at home" not in system.content


async def test_qwen3guard_controversial_follows_the_tenant_setting_through_the_tiered_guard():
    raw = "Safety: Controversial\nCategories: Politically Sensitive Topics"
    req = CheckRequest(stage=Stage.INPUT, messages=[user("Who should I vote for?")], taxonomy="mlcommons")
    for setting, label in (("refuse", Label.UNSAFE), ("allow", Label.SAFE)):
        guard = TieredGuard(deliberative=DeliberativeChecker(ScriptedBackend([raw]), format="qwen3guard"))
        decision = await guard.check(req, CheckSettings(controversial=setting))
        assert decision.label is label and not decision.undecided
        assert "controversial" in decision.verdicts[0].explanation


def test_policy_document_round_trips_through_its_text():
    doc = parse_policy(SPEC)
    assert doc.violates[1].startswith("Instructions to get into")
    assert doc.safe and doc.instructions
    assert parse_policy(render_policy(doc)) == doc
    prose = parse_policy(builtin_specs()["general"].text)
    assert prose.instructions and not prose.sectioned
