"""A model per role (specguard.roles): the policy file and --role choose them, resolution says
where each came from, one embedded model is shared, keys come from the environment, and a role
on its own hosted model is called at its own address with its own key.

The hosted critic is a real HTTP server on loopback (FastAPI + uvicorn) that the runtime calls
with its lean OpenAI client; it answers like a capable model would (it stands in for a hosted
model). The guarded server is real too, driven by the official openai client. The serving
model is a scripted backend (a deterministic draft the guard flags) and the guard a keyword
checker (stand-ins for the model and the trained fast tier)."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, Request
from typer.testing import CliRunner

from specguard.backends.scripted import ScriptedBackend
from specguard.cli import app
from specguard.core import Runtime
from specguard.errors import BackendError, ConfigError
from specguard.guard import CheckRequest, Label, Stage, Tier, TieredGuard, Verdict
from specguard.policy import Policy
from specguard.roles import (
    RetryingBackend,
    RoleBackends,
    RoleModel,
    RoleName,
    RoleTable,
    load_role_backend,
    parse_role_options,
    resolve_roles,
)
from specguard.store import Store
from specguard.types import GenerationParams, user

from _loopback import serve

runner = CliRunner()
STORY = ("Once upon a time, a young chemist named Ada mixed baking soda and vinegar, and the "
         "fizzing foam taught her how acids and bases react.")


def test_role_options_parse_with_their_own_api_base_key_variable_timeout_and_retries():
    roles = parse_role_options([
        "guard=vllm:openai/gpt-oss-safeguard-20b;api_base=http://gpu:8000/v1;format=gpt_oss_safeguard",
        "meta-critic=litellm:openai/gpt-4o;api_key_env=META_KEY;timeout_s=12;retries=4",
        "critic=off"])
    assert roles[RoleName.GUARD].format == "gpt_oss_safeguard"
    assert roles[RoleName.GUARD].api_base == "http://gpu:8000/v1"
    meta = roles[RoleName.META_CRITIC]
    assert (meta.api_key_env, meta.timeout_s, meta.retries) == ("META_KEY", 12.0, 4)
    assert roles[RoleName.CRITIC].off
    for bad in ("judge", "jury=embedded", "critic=embedded;timeout_s", "critic=x;colour=red",
                "guard=embedded;retries=99"):
        with pytest.raises(ConfigError):
            parse_role_options([bad])


def test_resolution_records_where_each_choice_came_from():
    table = RoleTable.model_validate({"critic": "off", "guard": {"model": "litellm:openai/x",
                                                                 "format": "qwen3guard"}})
    resolved = resolve_roles(table, parse_role_options(["guard=litellm:openai/y"]),
                             generate="litellm:openai/serving")
    assert resolved[RoleName.GENERATE].uri == "litellm:openai/serving"
    assert resolved[RoleName.GENERATE].source == "--backend"
    assert resolved[RoleName.GUARD].uri == "litellm:openai/y" and resolved[RoleName.GUARD].source == "--role"
    assert resolved[RoleName.CRITIC].off and resolved[RoleName.CRITIC].source == "policy file"
    assert resolved[RoleName.JUDGE].uri == "litellm:openai/serving"
    assert resolved[RoleName.JUDGE].source == "built-in (the serving model)"
    assert resolve_roles()[RoleName.GENERATE].uri == "embedded"
    with pytest.raises(ValueError, match="only the guard role has a format"):
        RoleTable.model_validate({"critic": {"model": "embedded", "format": "thinkguard"}})
    with pytest.raises(ConfigError, match="roles"):
        Policy.from_dict({"roles": {"critics": "off"}})  # a typo is an error


def test_roles_that_name_the_serving_model_share_its_backend():
    serving = ScriptedBackend(["x"], name="embedded:SmolLM2-135M")
    roles = RoleBackends.serving(serving, RoleTable.model_validate({
        "critic": "embedded", "meta_critic": "generate", "guard": "off"}))
    assert roles.get(RoleName.CRITIC) is serving and roles.get(RoleName.META_CRITIC) is serving
    assert roles.get(RoleName.GUARD) is None and roles.distinct() == [serving]


def test_a_key_comes_from_the_environment_and_a_missing_one_says_what_to_set(monkeypatch):
    spec = RoleModel(model="openai:critic", api_base="http://127.0.0.1:9/v1", api_key_env="CRITIC_KEY")
    monkeypatch.delenv("CRITIC_KEY", raising=False)
    with pytest.raises(ConfigError, match="export CRITIC_KEY"):
        load_role_backend(spec)
    monkeypatch.setenv("CRITIC_KEY", "sk-test")
    backend = load_role_backend(spec)
    assert isinstance(backend, RetryingBackend) and backend.retries == 2


class _Flaky:
    """A model server that fails twice, then answers (the outside world failing)."""

    name = "flaky"
    capabilities = ScriptedBackend.capabilities

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, messages, params):
        self.calls += 1
        if self.calls < 3:
            raise BackendError("503 from upstream")
        return await ScriptedBackend(["fine"]).complete(messages, params)

    async def load(self): ...

    async def aclose(self): ...

    def stream(self, messages, params): ...


async def test_the_retry_budget_is_the_roles_own():
    assert (await RetryingBackend(_Flaky(), 2).complete([user("hi")], GenerationParams())).text == "fine"
    with pytest.raises(BackendError):
        await RetryingBackend(_Flaky(), 1).complete([user("hi")], GenerationParams())


class KeywordChecker:
    tier = Tier.FAST
    name = "keyword"

    async def check(self, request: CheckRequest) -> Verdict:
        text = request.response if request.stage is Stage.OUTPUT else request.last_user_text
        bad = "bomb" in (text or "").lower()
        return Verdict(stage=request.stage, label=Label.UNSAFE if bad else Label.SAFE,
                       tier=self.tier, checker=self.name)


def hosted_critic(seen: list[dict]) -> FastAPI:
    """A hosted capable model's OpenAI endpoint, on loopback: it critiques and rewrites."""
    api = FastAPI()

    @api.get("/healthz")
    async def healthz():
        return {"ok": True}

    @api.post("/v1/chat/completions")
    async def complete(request: Request):
        body = await request.json()
        seen.append({"auth": request.headers.get("authorization"), "model": body["model"]})
        last = body["messages"][-1]["content"]
        text = ("The draft explains a weapon; tell a safe chemistry story instead."
                if last.startswith("Identify specific ways") else STORY)
        return {"id": "c1", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}}

    return api


def test_the_critic_role_runs_on_its_hosted_model_through_the_real_server(monkeypatch):
    import openai

    from specguard.server import create_app

    seen: list[dict] = []
    monkeypatch.setenv("CRITIC_KEY", "sk-critic-123")
    with serve(hosted_critic(seen)) as critic_base:
        resolved = resolve_roles(None, parse_role_options([
            f"critic=openai:capable-critic;api_base={critic_base}/v1;api_key_env=CRITIC_KEY;"
            "timeout_s=10;retries=1"]), generate="scripted", generate_source="test")
        serving = ScriptedBackend(["Here is how to make a bomb."])
        rt = Runtime(serving, policy=Policy.default().with_key("sg-key"),
                     store=Store(":memory:"), guard=TieredGuard(fast=KeywordChecker()),
                     roles=RoleBackends.build(resolved, generate=serving))
        with serve(create_app(rt), ready_path="/readyz") as base:
            client = openai.OpenAI(base_url=base + "/v1", api_key="sg-key", max_retries=0, timeout=60)
            out = client.chat.completions.create(
                model="specguard", messages=[{"role": "user", "content": "tell me a story about chemistry"}])
    assert out.choices[0].message.content == STORY
    report = out.model_extra["specguard"]
    assert report["action"] == "revised" and report["revisions"][0]["accepted"]
    assert len(serving.calls) == 1  # the serving model drafted; the hosted critic did the rest
    assert [s["model"] for s in seen] == ["capable-critic", "capable-critic"]
    assert all(s["auth"] == "Bearer sk-critic-123" for s in seen)


def test_policy_check_warns_about_weak_roles_on_the_embedded_model(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("defaults: {critique: when_flagged}\n")
    res = runner.invoke(app, ["policy", "check", str(path)])
    assert res.exit_code == 0
    assert "the critic role is played by the embedded 135M model" in res.output
    assert "the guard role is played by the embedded 135M model" in res.output
    res = runner.invoke(app, ["policy", "check", str(path), "--role", "critic=litellm:openai/gpt-4o",
                              "--role", "guard=off"])
    assert res.exit_code == 0 and "critic role is played" not in res.output
    assert "the guard role is off (--role)" in res.output and "fast tier decides alone" in res.output
    shipped = runner.invoke(app, ["policy", "check", "specs/policies/embedded_default.yaml"])
    assert shipped.exit_code == 0 and "warning" not in shipped.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("roles: {guard: {model: litellm:x, format: llama_guard_9}}\n")
    res = runner.invoke(app, ["policy", "check", str(bad)])
    assert res.exit_code == 1 and "llama_guard_9" in res.output


def test_policy_explain_shows_who_plays_each_role_and_where_that_came_from(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("roles:\n  guard: {model: 'litellm:hosted_vllm/Qwen/Qwen3Guard-Gen-4B', "
                    "format: qwen3guard, api_base: 'http://gpu:8000/v1'}\n  critic: 'off'\n")
    res = runner.invoke(app, ["policy", "explain", str(path), "--role",
                              "meta_critic=litellm:openai/gpt-4o"], terminal_width=250)
    assert res.exit_code == 0, res.output
    lines = {line.split("│")[1].strip(): line for line in res.output.splitlines()
             if line.startswith("│") and line.split("│")[1].strip()}
    assert "Qwen" in lines["guard"] and "policy file p.yaml" in lines["guard"]
    assert "off" in lines["critic"] and "--role" in lines["meta_critic"]
    assert "built-in (the serving model)" in lines["guidelines"]
    from specguard.roles import role_rows

    rows = {r[0]: r for r in role_rows(resolve_roles(Policy.load(path).file.roles))}
    assert rows["guard"][1] == ("litellm:hosted_vllm/Qwen/Qwen3Guard-Gen-4B (format qwen3guard) "
                                "@ http://gpu:8000/v1")


@pytest.mark.parametrize("command", [["serve"], ["chat"], ["demo"], ["optimize"], ["eval", "run"],
                                     ["admin", "guidelines", "derive"]])
def test_the_commands_take_role_options(command):
    res = runner.invoke(app, [*command, "--help"], terminal_width=200)
    assert res.exit_code == 0 and "--role" in res.output


# -- serve's spec updates and the guard role's policy, end to end --------------------------------


async def test_spec_updates_propose_with_the_meta_critic_role_and_gate_with_the_critic_role(tmp_path):
    """What `serve` builds (build_runtime with SpecUpdater.from_roles): the meta-critic role's
    model writes the candidate, the critic role's model critiques and revises the gate's
    canaries, the serving model only drafts them; with the meta-critic role off nothing
    proposes (no updater)."""
    from specguard.agents.meta_critic import Transcript
    from specguard.agents.spec_updates import SpecUpdater, UpdateJob, UpdateStatus
    from specguard.cli import build_runtime
    from specguard.guard.policy_doc import parse_policy
    from specguard.policy import PolicySettings, SpecUpdateMode
    from specguard.types import Message, Role

    rule = "Step-by-step help to build explosives or weapons, however the request is framed."
    refusal = "I can't help with that, but I can explain the safety rules around it."
    rt = build_runtime("scripted:Sure, here is a first draft.", None, str(tmp_path / "s.db"),
                       roles=[f"meta_critic=scripted:VIOLATES: {rule}",
                              f"critic=scripted:{refusal}"],
                       spec_updater=SpecUpdater.from_roles)
    try:
        meta, critic = rt.roles.get(RoleName.META_CRITIC), rt.roles.get(RoleName.CRITIC)
        assert len({id(rt.backend), id(meta), id(critic)}) == 3
        mode = SpecUpdateMode.GATED
        out = await rt.spec_updater.apply(UpdateJob(
            spec_name="general", scope="tenant:default", mode=mode,
            settings=PolicySettings(spec_update=mode, spec_update_canaries="small"),
            transcript=Transcript(id="r1", messages=[user("How do I build a pipe bomb?")],
                                  turns=[Message(role=Role.ASSISTANT, content="Sure, here.")])))
        assert len(meta.calls) == 1 and out.proposal == f"VIOLATES: {rule}"
        assert rule in parse_policy(out.text).violates  # the rule went to its section
        # the gate: 4 canaries drafted once by the serving model, each critiqued and revised
        # by the critic role (once under the active spec, once under the candidate)
        assert len(rt.backend.calls) == 4 and len(critic.calls) == 4 * 2 * 2
        # the critic answers alike under both specs: nothing lost, the candidate serves
        assert out.status is UpdateStatus.ACTIVATED, out.reason
        assert rule in rt.store.specs.active("general", "tenant:default").text
    finally:
        rt.store.close()
    off = build_runtime("scripted:x", None, str(tmp_path / "t.db"), roles=["meta_critic=off"],
                        spec_updater=SpecUpdater.from_roles)
    assert off.spec_updater is None
    off.store.close()


async def test_the_guard_role_judges_by_the_scopes_active_spec_in_its_own_format(tmp_path):
    """The deliberative tier's policy is the tenant's active (learned) spec, rendered as
    gpt-oss-safeguard's sectioned system message; another tenant's guard sees the global spec."""
    from specguard.guard import DeliberativeChecker
    from specguard.spec import Provenance, SpecSource

    learned = "VIOLATES: Directions to a private person's home, even as a surprise."
    verdict = ('{"violation": 1, "policy_category": "policy", '
               '"rationale": "Breaks the tenant\'s rule on home addresses."}')
    guard_model = ScriptedBackend([verdict])
    store = Store(str(tmp_path / "specs.db"))
    inherited = store.specs.active("general", "tenant:acme")  # the global spec, until now
    store.specs.propose("general", "tenant:acme", inherited.text + "\n\n" + learned, parent=None,
                        provenance=Provenance(source=SpecSource.OPTIMIZE), activate=True)
    policy = Policy.from_dict({"defaults": {"output_check": {"enabled": False}, "critique": "off"},
                               "tenants": {"acme": {}, "other": {}}})
    rt = Runtime(ScriptedBackend(["Sure."]), policy=policy, store=store, guard=TieredGuard(
        deliberative=DeliberativeChecker(guard_model, format="gpt_oss_safeguard")))
    try:
        res = await rt.chat([user("Where does my neighbour live? I want to surprise him.")],
                            tenant="acme")
        assert res.action.value == "refused"
        system = guard_model.calls[0][0]
        assert system.role.value == "system" and "## VIOLATES" in system.content
        assert "private person's home" in system.content
        assert "neighbour" not in system.content  # the content goes in the user turn
        await rt.chat([user("Where does my neighbour live?")], tenant="other")
        assert "private person's home" not in guard_model.calls[1][0].content
    finally:
        await rt.aclose()


async def test_qwen3guards_controversial_label_is_mapped_per_tenant_and_per_profile():
    """`controversial: refuse | allow` resolved like any setting: the tenant's, overridden by
    the user's profile."""
    from specguard.guard import DeliberativeChecker

    raw = "Safety: Controversial\nCategories: Politically Sensitive Topics"
    policy = Policy.from_dict({
        "defaults": {"output_check": {"enabled": False}, "critique": "off", "taxonomy": "mlcommons"},
        "tenants": {"strict": {}, "open": {"settings": {"input_check": {"controversial": "allow"}}}},
        "profiles": {"teen": {"text": "I am 15 years old.",
                              "settings": {"input_check": {"controversial": "refuse"}}}},
        "users": {"kid": {"tenant": "open", "profile": "teen"}, "adult": {"tenant": "open"}}})
    rt = Runtime(ScriptedBackend(["Here are the main positions."]), policy=policy,
                 store=Store(":memory:"),
                 guard=TieredGuard(deliberative=DeliberativeChecker(ScriptedBackend([raw]),
                                                                    format="qwen3guard")))
    ask = [user("Which party should I vote for?")]
    outcomes = {who: (await rt.chat(ask, tenant=tenant, user=who)).action.value
                for tenant, who in (("strict", None), ("open", "adult"), ("open", "kid"))}
    assert outcomes == {None: "refused", "adult": "allowed", "kid": "refused"}
    await rt.aclose()
