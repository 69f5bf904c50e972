"""kill -9 of a real `specguard serve` process in the middle of its writes, then: the SQLite file
passes its integrity and foreign-key checks, every spec's versions are contiguous and its head
is its one active version, no profile has two approved guideline versions, every stored row has
the audit entry of its own transaction, and the server starts again and serves.

Seeding is interrupted deterministically: this test takes the store's write lock between two
of the server's seeding transactions (the server waits on it) and kills the server there.
A store left behind by the old two-step seeding (a version without its head) is repaired at
start-up instead of answering 404 "No active spec" forever."""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest

from specguard.policy import hash_key
from specguard.server.echo_upstream import create_echo_upstream
from specguard.spec import builtin_specs

from _loopback import serve
from _procs import running, start_server

pytestmark = pytest.mark.slow

USER, OPERATOR = "sg-crash-user", "sg-crash-operator"
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
CHAT = {"model": "specguard", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def upstream():
    with serve(create_echo_upstream(answer="fine")) as url:
        yield url + "/v1"


@pytest.fixture
def policy(tmp_path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


def integrity(db: Path) -> dict:
    """Every invariant a crash must not break; returns counts for the test to look at."""
    c = sqlite3.connect(db)
    try:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert c.execute("PRAGMA foreign_key_check").fetchall() == []
        versions: dict[tuple, list[int]] = {}
        for name, scope, version in c.execute("SELECT name, scope, version FROM specs"):
            versions.setdefault((name, scope), []).append(version)
        for key, vs in versions.items():
            assert sorted(vs) == list(range(1, len(vs) + 1)), (key, sorted(vs))
        heads = {(n, s): v for n, s, v in c.execute("SELECT name, scope, active_version FROM spec_heads")}
        for key, version in heads.items():
            assert version in versions[key], key
        for (name, scope), vs in versions.items():
            active = [v for (v,) in c.execute("SELECT version FROM specs WHERE name=? AND scope=? AND "
                                               "status='active'", (name, scope))]
            assert active == ([heads[(name, scope)]] if (name, scope) in heads else []), (name, scope)
            if scope == "global":
                assert (name, scope) in heads, f"{name} has versions and no head"
        assert c.execute("SELECT profile FROM profile_guidelines WHERE status='approved' GROUP BY "
                         "profile HAVING count(*) > 1").fetchall() == []
        audited = {(a, t) for a, t in c.execute("SELECT action, target FROM audit_log")}
        users = [u for (u,) in c.execute("SELECT id FROM users")]
        keys = [k for (k,) in c.execute("SELECT name FROM api_keys")]
        assert all(("user.create", f"user:{u}") in audited for u in users)
        assert all(("api_key.create", f"api_key:{k}") in audited for k in keys)
        directory_writes = c.execute("SELECT count(*) FROM audit_log WHERE action LIKE 'user.%' OR "
                                     "action LIKE 'profile.%' OR action LIKE 'api_key.%'").fetchone()[0]
        revision = c.execute("SELECT value FROM store_meta WHERE key='directory'").fetchone()[0]
        assert revision == directory_writes  # each write and its revision bump: one transaction
        return {"specs": len(versions), "heads": len(heads), "users": len(users), "keys": len(keys)}
    finally:
        c.close()


def _serves(server) -> None:
    r = httpx.post(server.url + "/v1/chat/completions", json=CHAT, timeout=60,
                   headers={"authorization": f"Bearer {USER}"})
    assert r.status_code == 200, r.text
    assert r.json()["specguard"]["specs"][0]["name"] == "general"


@pytest.mark.parametrize("after", [1, 4])
def test_kill_during_seeding_leaves_whole_specs_and_the_server_serves(tmp_path, policy, upstream, after):
    db = tmp_path / "seed.db"
    server = start_server(tmp_path, policy=policy, store=str(db), api_base=upstream, wait=False)
    lock = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until `after` specs are seeded
            if not db.exists():
                time.sleep(0.01)
                continue
            try:
                probe = sqlite3.connect(db, timeout=0.05)
                n = probe.execute("SELECT count(*) FROM spec_heads").fetchone()[0]
                probe.close()
                if n >= after:
                    break
            except sqlite3.OperationalError:
                pass  # no table yet, or busy
            time.sleep(0.001)
        lock = sqlite3.connect(db, timeout=30, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # the server's next seeding transaction waits here
        seeded = lock.execute("SELECT count(*) FROM spec_heads").fetchone()[0]
        server.kill9()
    finally:
        if lock is not None:
            lock.execute("ROLLBACK")
            lock.close()
        server.stop()
    assert seeded >= after
    counts = integrity(db)
    assert counts["heads"] == seeded
    with running(tmp_path, policy=policy, store=str(db), api_base=upstream, name="restart") as again:
        _serves(again)
    assert integrity(db)["heads"] == len(builtin_specs())


def test_a_spec_left_without_its_head_is_repaired_at_start_up(tmp_path, policy, upstream):
    """What the old seeding left after a kill between its two transactions: version 1, no head."""
    db = tmp_path / "headless.db"
    with running(tmp_path, policy=policy, store=str(db), api_base=upstream) as server:
        _serves(server)
    c = sqlite3.connect(db)
    c.execute("PRAGMA foreign_keys=ON")
    c.execute("DELETE FROM spec_heads WHERE name='general'")
    c.execute("UPDATE specs SET status='candidate' WHERE name='general'")
    c.commit()
    c.close()
    with running(tmp_path, policy=policy, store=str(db), api_base=upstream, name="repaired") as server:
        _serves(server)
        assert "restored as the head of general@global" in server.output()
    integrity(db)


def _writers(url: str, stop: threading.Event, errors: list) -> list[threading.Thread]:
    op = {"authorization": f"Bearer {OPERATOR}"}

    def users():
        with httpx.Client(base_url=url, headers=op, timeout=30) as c:
            i = 0
            while not stop.is_set():
                i += 1
                uid = f"u{random.randrange(10**9)}"
                c.post("/admin/users", json={"id": uid, "tenant": "acme"})
                c.post("/admin/api-keys", json={"name": f"k-{uid}", "user": uid})
                if i % 5 == 0:
                    c.delete(f"/admin/users/{uid}")

    def specs():
        with httpx.Client(base_url=url, headers=op, timeout=30) as c:
            i = 0
            while not stop.is_set():
                i += 1
                c.post("/admin/specs/general", json={"scope": "tenant:acme", "text": f"Rule {i}.",
                                                     "activate": True})
                if i % 3 == 0:
                    c.post("/admin/specs/general/rollback", params={"scope": "tenant:acme"})

    def guidelines():
        with httpx.Client(base_url=url, headers=op, timeout=30) as c:
            c.post("/admin/profiles", json={"id": f"p{random.randrange(10**9)}", "text": "x"})
            pid = f"gp{random.randrange(10**9)}"
            c.post("/admin/profiles", json={"id": pid, "text": "I am pregnant.", "tenant": "acme"})
            while not stop.is_set():
                r = c.post(f"/admin/profiles/{pid}/guidelines", json={"items": ["alcohol"]})
                if r.status_code == 201:
                    c.post(f"/admin/profiles/{pid}/guidelines/{r.json()['version']}/approve")

    def guard(fn):
        def run():
            try:
                fn()
            except httpx.HTTPError:
                pass  # the server was killed under it: expected
            except (KeyError, ValueError) as exc:  # an answer of the wrong shape
                errors.append(repr(exc))
        return threading.Thread(target=run, daemon=True)

    return [guard(f) for f in (users, users, specs, guidelines)]


@pytest.mark.parametrize("seconds", [1.0, 2.5])
def test_kill_during_spec_and_admin_writes(tmp_path, policy, upstream, seconds):
    db = tmp_path / "writes.db"
    server = start_server(tmp_path, policy=policy, store=str(db), api_base=upstream)
    stop = threading.Event()
    errors: list = []
    threads = _writers(server.url, stop, errors)
    try:
        for t in threads:
            t.start()
        time.sleep(seconds + random.random())
        server.kill9()
    finally:
        stop.set()
        server.stop()
        for t in threads:
            t.join(timeout=30)
    assert not errors, errors
    counts = integrity(db)
    assert counts["users"] > 0  # the writers got somewhere before the kill
    with running(tmp_path, policy=policy, store=str(db), api_base=upstream, name="restart") as again:
        _serves(again)
        listed = httpx.get(again.url + "/admin/users", headers={"authorization": f"Bearer {OPERATOR}"})
        assert listed.status_code == 200
        history = httpx.get(again.url + "/admin/specs/general", params={"scope": "tenant:acme"},
                            headers={"authorization": f"Bearer {OPERATOR}"}).json()
        assert [s["version"] for s in history] == list(range(1, len(history) + 1))
    print("\nafter the kill:", json.dumps(counts))


def test_one_invalid_stored_entry_is_left_out_and_logged_the_server_still_starts(
        tmp_path, policy, upstream):
    """Entries edited by hand into something invalid (a user of a tenant the file no longer
    has, a key whose hash is not a hash): the server starts, logs each, and serves the rest."""
    db = tmp_path / "invalid.db"
    with running(tmp_path, policy=policy, store=str(db), api_base=upstream) as server:
        op = {"authorization": f"Bearer {OPERATOR}"}
        for uid in ("good", "bad"):
            assert httpx.post(server.url + "/admin/users", headers=op,
                              json={"id": uid, "tenant": "acme"}).status_code == 201
        key = httpx.post(server.url + "/admin/api-keys", headers=op,
                         json={"name": "good-key", "user": "good"}).json()["key"]
        assert httpx.post(server.url + "/admin/api-keys", headers=op,
                          json={"name": "broken-key", "user": "good"}).status_code == 201
    c = sqlite3.connect(db)
    c.execute("UPDATE users SET tenant='gone' WHERE id='bad'")
    c.execute("UPDATE api_keys SET sha256='not-a-hash' WHERE name='broken-key'")
    c.commit()
    c.close()
    with running(tmp_path, policy=policy, store=str(db), api_base=upstream, name="invalid") as server:
        r = httpx.post(server.url + "/v1/chat/completions", json=CHAT, timeout=60,
                       headers={"authorization": f"Bearer {key}"})
        assert r.status_code == 200 and r.json()["specguard"]["user"] == "good"
        time.sleep(0.5)
        log = server.output()
    assert "user 'bad' names unknown tenant 'gone'; left out" in log
    assert "stored API key 'broken-key' is invalid and is not served" in log
