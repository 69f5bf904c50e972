from __future__ import annotations

import pytest

from specguard.errors import AuthenticationError, ConfigError
from specguard.policy import CritiqueMode, Policy, hash_key

POLICY = f"""
defaults:
  critique: always
  input_check: {{threshold: 0.6}}
tenants:
  acme:
    settings: {{refusal_message: "Acme says no.", specs: [general, privacy]}}
  globex: {{}}
profiles:
  teen:
    text: "I am 15 years old."
    attributes: {{age_band: "13-17"}}
    settings: {{critique_rounds: 2}}
users:
  alice: {{tenant: acme, profile: teen, settings: {{max_tokens: 64}}}}
  bob: {{tenant: acme}}
api_keys:
  - {{name: alice-app, sha256: "{hash_key('alice-secret')}", tenant: acme, user: alice}}
  - {{name: acme-backend, sha256: "{hash_key('acme-secret')}", tenant: acme}}
"""


def test_layers_compose_and_record_their_source():
    p = Policy.from_yaml(POLICY)
    r = p.resolve("acme", "alice")
    s = r.settings
    assert s.critique is CritiqueMode.ALWAYS
    assert s.input_check.threshold == 0.6 and s.input_check.enabled is True
    assert s.refusal_message == "Acme says no."
    assert s.critique_rounds == 2
    assert s.max_tokens == 64
    assert r.profile_id == "teen" and r.profile.text == "I am 15 years old."
    assert r.sources["critique"] == "defaults"
    assert r.sources["input_check.threshold"] == "defaults"
    assert r.sources["refusal_message"] == "tenant:acme"
    assert r.sources["critique_rounds"] == "profile:teen"
    assert r.sources["max_tokens"] == "user:alice"
    rows = {path: (value, src) for path, value, src in p.explain("acme", "alice")}
    assert rows["output_check.enabled"] == (True, "built-in")
    assert rows["specs"] == (["general", "privacy"], "tenant:acme")


def test_a_user_of_another_tenant_does_not_carry_its_profile_over():
    p = Policy.from_yaml(POLICY)
    r = p.resolve("globex", "alice")
    assert r.profile is None and r.settings.max_tokens == 512


def test_keys_are_checked_by_hash_and_bind_tenant_and_user():
    p = Policy.from_yaml(POLICY)
    c = p.authenticate("alice-secret")
    assert (c.tenant, c.user, c.key_name) == ("acme", "alice", "alice-app")
    assert p.authenticate("acme-secret").user is None
    with pytest.raises(AuthenticationError):
        p.authenticate("wrong")
    with pytest.raises(AuthenticationError):
        p.authenticate("")
    assert "alice-secret" not in POLICY


@pytest.mark.parametrize(
    "bad, field",
    [
        ("defaults: {critque: always}", "critque"),
        ("defaults: {critique: sometimes}", "critique"),
        ("tenants: {a: {settings: {input_check: {escalate_band: [0.9, 0.1]}}}}", "escalate_band"),
        ("users: {u: {tenant: nowhere}}", "users.u.tenant"),
        ("profiles: {p: {text: x}}\nusers: {u: {tenant: default, profile: q}}", "users.u.profile"),
        ("api_keys: [{name: k, sha256: abc, tenant: default}]", "sha256"),
        ("tenants: [1, 2]", "tenants"),
        ("defaults: [unclosed", "not valid YAML"),
    ],
)
def test_a_bad_file_fails_at_load_naming_the_field(bad, field):
    with pytest.raises(ConfigError) as info:
        Policy.from_yaml(bad, source="p.yaml")
    assert field in str(info.value) and "p.yaml" in str(info.value)


def test_with_key_adds_a_key_without_touching_the_rest():
    p = Policy.from_yaml(POLICY).with_key("new-key", tenant="globex")
    assert p.authenticate("new-key").tenant == "globex"
    assert p.authenticate("alice-secret").user == "alice"


def test_example_policies_are_valid(tmp_path):
    from importlib import resources

    folder = resources.files("specguard.specs") / "policies"
    files = [f for f in folder.iterdir() if f.name.endswith(".yaml")]
    assert files, "specs/policies ships example policies"
    for f in files:
        Policy.from_yaml(f.read_text(), source=f.name)
