"""Writers in two processes at once, and two replicas on one PostgreSQL.

- The issue's race: a CLI process binds users to a profile while the server's admin API
  deletes (and re-creates) that profile. Each write validates inside its own transaction, and a
  foreign key backs it, so no user ever points at a missing profile; the server still starts
  and `specguard admin user list` still works.
- Two `specguard serve` replicas on one PostgreSQL: a spec version activated through one serves
  on the other within the spec cache's time (2 s); a key minted on one authenticates on the
  other within the directory's (1 s); two approvals of one profile's guidelines at once, one on
  each replica, leave one approved version.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import httpx
import pytest

from specguard.policy import hash_key
from specguard.server.echo_upstream import create_echo_upstream

from _loopback import serve
from _procs import ENV, admin_cli, running

pytestmark = pytest.mark.slow

USER, OPERATOR = "sg-race-user", "sg-race-operator"
POLICY = f"""
defaults:
  input_check: {{enabled: false}}
  output_check: {{enabled: false}}
  critique: "off"
tenants: {{default: {{}}, acme: {{}}}}
api_keys:
  - {{name: user, sha256: {hash_key(USER)}, tenant: default}}
  - {{name: operator, sha256: {hash_key(OPERATOR)}, tenant: default, operator: true}}
"""
OP = {"authorization": f"Bearer {OPERATOR}"}


@pytest.fixture(scope="module")
def upstream():
    with serve(create_echo_upstream(answer="fine")) as url:
        yield url + "/v1"


PROFILE = {"id": "p", "text": "I am pregnant.", "tenant": "acme"}  # what the API creates again


def test_cli_binds_users_while_the_api_deletes_their_profile(tmp_path, upstream):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    db = str(tmp_path / "race.db")
    with running(tmp_path, policy=policy, store=db, api_base=upstream) as server:
        assert httpx.post(server.url + "/admin/profiles", headers=OP, json=PROFILE).status_code == 201
        # The race runs in rounds until the CLI has bound someone while the API was deleting:
        # a round's outcome depends on scheduling (CI saw rounds with 0 of 150 binds), and a
        # round without binds tests nothing about binding.
        made = refused = deleted = 0
        reasons: list[str] = []
        statuses: set[int] = set()
        for rnd in range(3):
            api_up = httpx.post(server.url + "/admin/profiles", headers=OP, json=PROFILE)
            assert api_up.status_code in (201, 409), api_up.text
            # The CLI's code path (DirectoryAdmin as `specguard admin` builds it), own process.
            cli = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
                import collections, sys
                from specguard.directory import ComposedPolicy, DirectoryAdmin, UserIn
                from specguard.errors import SpecguardError
                from specguard.policy import Policy
                from specguard.store import Store
                admin = DirectoryAdmin(ComposedPolicy(Policy.load({str(policy)!r}), Store({db!r})))
                made = refused = 0
                why = collections.Counter()
                for i in range(150):
                    try:
                        admin.create_user(UserIn(id=f"cli{rnd}_{{i}}", tenant="acme", profile="p"),
                                          "cli:race")
                        made += 1
                    except SpecguardError as exc:
                        refused += 1
                        why[exc.status_code] += 1
                        assert exc.status_code in (409, 422, 503), exc
                print(made, refused, dict(why))
            """)], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            with httpx.Client(base_url=server.url, headers=OP, timeout=30) as api:
                while cli.poll() is None:
                    r = api.delete("/admin/profiles/p")
                    statuses.add(r.status_code)
                    if r.status_code == 204:
                        deleted += 1
                        api.post("/admin/profiles", json=PROFILE)
                    # The profile stays a moment between deletions, so the CLI gets binds in.
                    time.sleep(0.02)
            out, err = cli.communicate(timeout=60)
            assert cli.returncode == 0, err[-3000:]
            m, r_, why = out.split(maxsplit=2)
            made, refused = made + int(m), refused + int(r_)
            reasons.append(why.strip())
            if made:
                break
        assert statuses <= {204, 404, 409}, statuses  # in use (409), or gone a moment (404)
        users = httpx.get(server.url + "/admin/users", headers=OP, params={"limit": 1000}).json()["data"]
        profiles = {p["id"] for p in httpx.get(server.url + "/admin/profiles", headers=OP).json()["data"]}
    print(f"\nrace: {made} users bound, {refused} refused (by status: {reasons}), profile "
          f"deleted {deleted} times")
    assert made > 0, reasons
    assert all(u["profile"] in profiles for u in users if u["profile"])  # nobody points at nothing
    # Both sides still work: the server starts, the CLI lists.
    with running(tmp_path, policy=policy, store=db, api_base=upstream, name="restart") as again:
        assert httpx.get(again.url + "/admin/users", headers=OP).status_code == 200
    listed = admin_cli(tmp_path, policy, db, "user", "list")
    assert listed.returncode == 0, listed.stderr


POSTGRES_URL = os.environ.get("SPECGUARD_TEST_POSTGRES_URL")


@pytest.fixture
def postgres_url():
    """A database of its own on the test PostgreSQL server, emptied first."""
    if not POSTGRES_URL:
        pytest.skip("no PostgreSQL: set SPECGUARD_TEST_POSTGRES_URL (scripts/test.sh does)")
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(POSTGRES_URL)
    admin_url = url.set(drivername="postgresql", database="postgres")
    conninfo = admin_url.render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS specguard_replicas WITH (FORCE)")
        conn.execute("CREATE DATABASE specguard_replicas")
    return url.set(database="specguard_replicas").render_as_string(hide_password=False)


def test_two_replicas_on_one_postgresql(tmp_path, upstream, postgres_url):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    with running(tmp_path, policy=policy, store=postgres_url, api_base=upstream, name="a") as a, \
            running(tmp_path, policy=policy, store=postgres_url, api_base=upstream, name="b") as b:
        user = {"authorization": f"Bearer {USER}"}

        def served_version(server) -> int:
            r = httpx.post(server.url + "/v1/chat/completions", headers=user, timeout=30,
                           json={"model": "specguard", "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200, r.text
            return next(s["version"] for s in r.json()["specguard"]["specs"] if s["name"] == "general")

        before = served_version(b)
        new = httpx.post(a.url + "/admin/specs/general", headers=OP, timeout=30,
                         json={"scope": "global", "text": "Answer helpfully; refuse weapon recipes.",
                               "activate": True})
        assert new.status_code == 201, new.text
        activated = time.monotonic()
        assert new.json()["version"] == before + 1
        while served_version(b) != new.json()["version"]:
            assert time.monotonic() - activated < 2.0 + 3.0, "replica b never served the new version"
            time.sleep(0.1)
        seen_after = time.monotonic() - activated
        # A key minted through a: b accepts it within the directory's refresh time.
        key = httpx.post(a.url + "/admin/api-keys", headers=OP, json={"name": "minted"}).json()["key"]
        minted = time.monotonic()
        while httpx.get(b.url + "/v1/models", headers={"authorization": f"Bearer {key}"}).status_code != 200:
            assert time.monotonic() - minted < 1.0 + 3.0, "replica b never accepted the new key"
            time.sleep(0.1)
        # Two approvals of one profile's guidelines at once, one per replica: one stays approved.
        assert httpx.post(a.url + "/admin/profiles", headers=OP,
                          json={"id": "hep", "text": "I have hepatitis."}).status_code == 201
        versions = [httpx.post(a.url + "/admin/profiles/hep/guidelines", headers=OP,
                               json={"items": [f"item {i}"]}).json()["version"] for i in range(2)]
        results: list[int] = []
        barrier = threading.Barrier(2)

        def approve(server, version):
            barrier.wait()
            results.append(httpx.post(f"{server.url}/admin/profiles/hep/guidelines/{version}/approve",
                                      headers=OP, timeout=30).status_code)

        threads = [threading.Thread(target=approve, args=(s, v)) for s, v in zip((a, b), versions)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        history = httpx.get(a.url + "/admin/profiles/hep/guidelines", headers=OP).json()
    print(f"\nreplicas: the new spec served on b {seen_after:.2f} s after a activated it; "
          f"approvals {results}")
    assert all(s in (200, 409) for s in results), results
    assert [g["status"] for g in history].count("approved") == 1
