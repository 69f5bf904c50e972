"""`specguard admin` and `specguard policy explain --user` against a real SQLite store."""

from __future__ import annotations

from typer.testing import CliRunner

from specguard.cli import app
from specguard.policy import Policy

POLICY = """
tenants:
  clinic: {settings: {critique: always}}
profiles:
  teen: {text: "I am 15 years old.", attributes: {age_band: "13-17"}}
users:
  sam: {tenant: clinic, profile: teen}
"""


def test_admin_cli_round_trip_and_explain(tmp_path):
    policy, store = tmp_path / "p.yaml", str(tmp_path / "s.db")
    policy.write_text(POLICY)
    run = CliRunner().invoke

    def admin(*args):
        result = run(app, ["admin", "--policy", str(policy), "--store", store, *args])
        assert result.exit_code == 0, result.output
        return result.output

    admin("profile", "create", "hep", "I have hepatitis.", "--health", "hepatitis",
          "--settings", '{"max_tokens": 40}')
    admin("user", "create", "zed", "--tenant", "clinic", "--profile", "hep")
    out = admin("key", "create", "zed-key", "--user", "zed")
    key = out.strip().splitlines()[-1]
    listed = admin("key", "list")
    assert "zed-key" in listed and key not in listed  # listed by name; the secret never again
    composed = _composed(policy, store)
    assert composed.authenticate(key).user == "zed"
    admin("guidelines", "set", "hep", "drinking alcohol (beer, wine, tequila)")
    assert '"status": "approved"' in admin("guidelines", "approve", "hep", "1")
    assert "cli:" in admin("audit")

    result = run(app, ["policy", "explain", str(policy), "--user", "zed", "--store", store])
    assert result.exit_code == 0, result.output
    assert "tenant clinic, user zed, profile hep" in result.output
    assert "user:zed" not in result.output and "profile:hep" in result.output  # max_tokens source
    result = run(app, ["policy", "explain", str(policy), "--user", "sam"])
    assert result.exit_code == 0 and "tenant clinic, user sam, profile teen" in result.output

    bad = run(app, ["admin", "--policy", str(policy), "--store", store, "user", "create", "x",
                    "--tenant", "nowhere"])
    assert bad.exit_code != 0


def _composed(policy, store):
    from specguard.profiles import ComposedPolicy
    from specguard.store import Store

    return ComposedPolicy(Policy.load(policy), Store(store, seed_builtin=False))
