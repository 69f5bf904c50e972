"""Nothing a caller does stalls everyone else: while each of the issue's stalls runs against a
real `specguard serve` process, /healthz (polled from outside every 20 ms) answers within
100 ms. Before the fix it waited 28.6 s behind a user listing at 1,500 users, 2.0 s behind four
900 KB chats and 7.6 s behind another process's SQLite write lock.

The machines these tests run on are shared (other processes may hold both cores), so a poll
can be late for reasons that are not the server's. Each stall is compared with the same server
polled idle just before (its baseline on this machine at this moment): 95% of the polls must
answer within 100 ms of the baseline's 95th percentile, and every poll within 1 s of the
baseline's slowest. A blocked event loop misses both by far."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import httpx
import pytest

from specguard.directory import ComposedPolicy, DirectoryAdmin, UserIn
from specguard.policy import Policy, User, hash_key
from specguard.server.echo_upstream import create_echo_upstream
from specguard.store import Store

from _loopback import serve
from _procs import ENV, HealthProbe, running

pytestmark = pytest.mark.slow

USER, OPERATOR = "sg-stall-user", "sg-stall-operator"
POLICY = f"""
defaults:
  input_check: {{deliberative: false}}
  output_check: {{enabled: false}}
  critique: "off"
  max_tokens: 16
tenants: {{default: {{}}, big: {{}}}}
api_keys:
  - {{name: user, sha256: {hash_key(USER)}, tenant: default}}
  - {{name: operator, sha256: {hash_key(OPERATOR)}, tenant: default, operator: true}}
"""
WINDOW_S = 4.0


def _under_load(url: str, work, threads: int = 4, window_s: float = WINDOW_S) -> tuple[dict, list]:
    """Run `work(client)` in a loop on `threads` threads for `window_s` while /healthz is polled;
    the probe's summary and every result of `work`."""
    stop = threading.Event()
    results: list = []

    def loop():
        with httpx.Client(base_url=url, timeout=120) as client:
            while not stop.is_set():
                try:
                    results.append(work(client))
                except httpx.HTTPError as exc:  # recorded: a test asserts on every result
                    results.append(("error", repr(exc)))

    workers = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    with HealthProbe(url) as probe:
        for w in workers:
            w.start()
        time.sleep(window_s)
        stop.set()
        summary = probe.summary()
    for w in workers:
        w.join(timeout=180)
    return summary, results


def _assert_responsive(name: str, summary: dict, baseline: dict) -> None:
    print(f"\n{name}: /healthz {_fmt(summary)} (idle baseline {_fmt(baseline)})")
    assert summary["n"] >= 20, summary
    assert summary["p95_ms"] < 100 + baseline["p95_ms"], (name, summary, baseline)
    assert summary["max_ms"] < 1000 + baseline["max_ms"], (name, summary, baseline)


def _fmt(s: dict) -> str:
    return (f"n={s['n']} p50 {s['p50_ms']:.1f} ms, p95 {s['p95_ms']:.1f} ms, max "
            f"{s['max_ms']:.1f} ms, {s['over_100ms']} over 100 ms")


def _baseline(url: str) -> dict:
    with HealthProbe(url) as probe:
        time.sleep(2.0)
        return probe.summary()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stalls")
    policy = tmp / "policy.yaml"
    policy.write_text(POLICY)
    db = tmp / "stalls.db"
    store = Store(str(db))
    with store.users.change("test:seed") as tx:  # 1,500 users, written in one transaction
        for i in range(1500):
            tx.put_user(f"user{i:05d}", User(tenant="big"), create=True, file_profile=False)
    store.close()
    with serve(create_echo_upstream(answer="fine")) as upstream:
        with running(tmp, policy=policy, store=str(db), api_base=upstream + "/v1") as server:
            yield tmp, policy, db, server


def test_a_user_listing_at_1500_users(setup):
    _, _, _, server = setup
    admin = {"authorization": f"Bearer {OPERATOR}"}

    def work(client):
        first = client.get("/admin/users", params={"limit": 1000}, headers=admin)
        second = client.get("/admin/users", headers=admin,
                            params={"limit": 1000, "after": first.json()["last_id"]})
        return first.status_code, second.status_code, len(first.json()["data"]) + len(second.json()["data"])

    baseline = _baseline(server.url)
    summary, results = _under_load(server.url, work)
    _assert_responsive("listing 1,500 users", summary, baseline)
    assert results and all(r == (200, 200, 1500) for r in results), results[:3]


def test_another_process_holding_the_sqlite_write_lock(setup):
    _, _, db, server = setup
    baseline = _baseline(server.url)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sqlite3, sys, time
        c = sqlite3.connect({str(db)!r}, isolation_level=None)
        c.execute("BEGIN IMMEDIATE")
        print("locked", flush=True)
        time.sleep({WINDOW_S + 4})  # longer than the server's 5 s busy timeout
        c.execute("ROLLBACK")
    """)], stdout=subprocess.PIPE, text=True, env=ENV)
    assert holder.stdout.readline().strip() == "locked"
    n = iter(range(10**6))

    def work(client):
        i = next(n)
        if i % 2:
            r = client.post("/admin/users", headers={"authorization": f"Bearer {OPERATOR}"},
                            json={"id": f"locked{i}", "tenant": "big"})
            return "write", r.status_code, r.headers.get("retry-after")
        r = client.post("/v1/chat/completions", headers={"authorization": f"Bearer {USER}"},
                        json={"model": "specguard", "messages": [{"role": "user", "content": "hi"}]})
        return "chat", r.status_code, None

    try:
        summary, results = _under_load(server.url, work)
    finally:
        holder.wait(timeout=30)
    _assert_responsive("another process's SQLite write lock", summary, baseline)
    chats = [s for kind, s, _ in results if kind == "chat"]
    writes = [(s, retry) for kind, s, retry in results if kind == "write"]
    assert chats and all(s == 200 for s in chats), chats  # reads never wait for the lock
    # A write waits for the lock up to the store's busy timeout, then answers 503 + Retry-After.
    assert writes and all(s == 201 or (s == 503 and retry) for s, retry in writes), writes
    assert any(s == 503 for s, _ in writes), writes  # the first writes outwaited the timeout


def test_recomposing_the_directory_while_another_process_writes(setup):
    tmp, policy, db, server = setup
    baseline = _baseline(server.url)
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        from specguard.directory import ComposedPolicy, DirectoryAdmin, UserIn
        from specguard.policy import Policy
        from specguard.store import Store
        admin = DirectoryAdmin(ComposedPolicy(Policy.load({str(policy)!r}), Store({str(db)!r})))
        for i in range(400):
            admin.create_user(UserIn(id=f"w{{i:04d}}", tenant="big"), "cli:writer")
    """)], env=ENV)

    def work(client):
        r = client.get("/v1/models", headers={"authorization": f"Bearer {USER}"})
        return r.status_code

    try:
        summary, results = _under_load(server.url, work, threads=2)
    finally:
        writer.wait(timeout=120)
    _assert_responsive("recomposing the directory (another process writing)", summary, baseline)
    assert all(s == 200 for s in results)
    # The replica saw the other process's writes (within its refresh time).
    time.sleep(1.5)
    listed = httpx.get(server.url + "/admin/users/w0399",
                       headers={"authorization": f"Bearer {OPERATOR}"}, timeout=30)
    assert listed.status_code == 200


def test_four_900kb_chats(setup):
    """Four 900 KB chats at once (the fast tier reads each in windows, on threads). The clients
    give up after the window: the server cancels what it can, and answers a small chat next."""
    _, _, _, server = setup
    text = ("Tell me about the history of bread baking in Europe. " * 17_000)[:900_000]
    statuses: list = []

    def chat():
        try:
            r = httpx.post(server.url + "/v1/chat/completions", timeout=WINDOW_S + 2,
                           headers={"authorization": f"Bearer {USER}"},
                           json={"model": "specguard", "messages": [{"role": "user", "content": text}]})
            statuses.append(r.status_code)
        except httpx.TimeoutException:
            statuses.append("gave up")

    baseline = _baseline(server.url)
    threads = [threading.Thread(target=chat) for _ in range(4)]
    with HealthProbe(server.url) as probe:
        for t in threads:
            t.start()
        time.sleep(WINDOW_S)
        summary = probe.summary()
    for t in threads:
        t.join(timeout=30)
    _assert_responsive("four 900 KB chats", summary, baseline)
    assert len(statuses) == 4 and all(s in (200, "gave up") for s in statuses), statuses
    small = httpx.post(server.url + "/v1/chat/completions", timeout=120,
                       headers={"authorization": f"Bearer {USER}"},
                       json={"model": "specguard", "messages": [{"role": "user", "content": "hi"}]})
    assert small.status_code == 200


def test_the_directory_view_is_reused_until_the_store_changes(tmp_path):
    """The composed policy is keyed by the store's revision: reading it again is the same object
    (nothing recomposed) until a write moves the revision."""
    store = Store(str(tmp_path / "d.db"), seed_builtin=False)
    policy = ComposedPolicy(Policy.from_dict({"tenants": {"default": {}}}), store, ttl_s=0.0)
    first = policy.current()
    assert policy.current() is first and policy.refresh() is first
    DirectoryAdmin(policy).create_user(UserIn(id="new"), "cli:t")
    assert policy.current() is not first and "new" in policy.file.users
    store.close()


def test_the_first_request_through_litellm(tmp_path):
    """A server whose model is reached through litellm: litellm's first import takes seconds
    (8-10 s on a loaded 2-core box) and used to happen in the first request, on the event loop.
    It happens at start-up now, on a thread; the first requests keep /healthz answering."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    with serve(create_echo_upstream(answer="fine")) as upstream, \
            running(tmp_path, policy=policy, store=str(tmp_path / "litellm.db"),
                    backend="litellm:openai/echo", api_base=upstream + "/v1",
                    env={"OPENAI_API_KEY": "sk-loopback"}) as server:
        baseline = _baseline(server.url)

        def work(client):
            r = client.post("/v1/chat/completions", headers={"authorization": f"Bearer {USER}"},
                            json={"model": "specguard", "messages": [{"role": "user", "content": "hi"}]})
            return r.status_code

        summary, results = _under_load(server.url, work, threads=1, window_s=3.0)
    _assert_responsive("the first requests through litellm", summary, baseline)
    assert results and all(s == 200 for s in results), results



def test_listing_and_creating_users_cost_the_same_statements_at_any_size(tmp_path):
    """Off the event loop is not enough: a listing that read the table again for each listed
    user (the old `origin()`) took seconds of the store's threads at 1,500 users, and creating
    user 1,000 took 293 ms. A page costs the same statements whatever its size and however
    many users there are, and so does a create."""
    from sqlalchemy import event

    def statements(n_users: int) -> dict[str, int]:
        store = Store(str(tmp_path / f"cost{n_users}.db"), seed_builtin=False)
        with store.users.change("test:seed") as tx:
            for i in range(n_users):
                tx.put_user(f"user{i:05d}", User(tenant="big"), create=True, file_profile=False)
        admin = DirectoryAdmin(ComposedPolicy(Policy.from_dict(
            {"tenants": {"default": {}, "big": {}}}), store))
        admin.policy.refresh()
        seen = [0]

        def count(*_):
            seen[0] += 1

        out = {}
        event.listen(store.engine, "before_cursor_execute", count)
        try:
            for limit in (5, 1000):
                seen[0] = 0
                page = admin.users(limit=limit)
                assert len(page.data) == min(limit, n_users)
                out[f"page of {limit}"] = seen[0]
            seen[0] = 0
            admin.create_user(UserIn(id="zz-new", tenant="big"), "cli:t")
            out["create"] = seen[0]
        finally:
            event.remove(store.engine, "before_cursor_execute", count)
            store.close()
        return out

    small, large = statements(10), statements(1500)
    print(f"\nstatements at 10 users {small}, at 1,500 users {large}")
    assert small == large, (small, large)
    assert large["page of 5"] == large["page of 1000"], large
