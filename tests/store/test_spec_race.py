"""Concurrent writers on one real store (two Store objects = two replicas), on a SQLite file and,
when scripts/test.sh started one, on PostgreSQL: proposals never share a version number,
compare-and-set activations let exactly one writer win, a rollback restores the previous text;
a rollback racing an activation rolls back the head it read (never a stale one), and
read-modify-write updates of a version (metrics, rejection) lose nothing (issue 14, item 4)."""

from __future__ import annotations

import os
import threading

import pytest
from specguard.errors import ConflictError
from specguard.spec import SpecStatus
from specguard.store import Store

POSTGRES_URL = os.environ.get("SPECGUARD_TEST_POSTGRES_URL")


def _postgres_database(name: str) -> str:
    """A database of its own on the test PostgreSQL server, created empty."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(POSTGRES_URL)
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return url.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "postgres"])
def two_stores(request, tmp_path):
    if request.param == "sqlite":
        path = str(tmp_path / "race.db")
    else:
        if not POSTGRES_URL:
            pytest.skip("no PostgreSQL: set SPECGUARD_TEST_POSTGRES_URL (scripts/test.sh does)")
        path = _postgres_database("specguard_spec_race")
    a, b = Store(path), Store(path)
    yield a, b
    a.close()
    b.close()


def _together(*fns):
    """Run the functions on threads released at the same instant; return results or errors."""
    barrier = threading.Barrier(len(fns))
    out: list = [None] * len(fns)

    def run(i, fn):
        barrier.wait()
        try:
            out[i] = fn()
        except ConflictError as exc:
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_concurrent_proposals_get_distinct_versions(two_stores):
    a, b = two_stores
    fns = [lambda s=s, i=i: s.specs.propose("general", "tenant:x", f"text {i}", parent=None)
           for i in range(8) for s in (a, b)]
    specs = _together(*fns)
    assert all(not isinstance(s, Exception) for s in specs)
    versions = sorted(s.version for s in specs)
    assert versions == list(range(1, 17))
    assert {s.text for s in a.specs.history("general", "tenant:x")} == {f"text {i}" for i in range(8)}


def test_racing_activations_on_one_revision_let_exactly_one_win(two_stores):
    a, b = two_stores
    v1 = a.specs.active("general")
    c1 = a.specs.propose("general", "global", "candidate one", parent=v1.version)
    c2 = b.specs.propose("general", "global", "candidate two", parent=v1.version)
    rev = a.specs.head_revision("general", "global")
    results = _together(
        lambda: a.specs.activate("general", "global", c1.version, expected_revision=rev),
        lambda: b.specs.activate("general", "global", c2.version, expected_revision=rev),
    )
    wins = [r for r in results if not isinstance(r, Exception)]
    losses = [r for r in results if isinstance(r, ConflictError)]
    assert len(wins) == 1 and len(losses) == 1
    active = b.specs.active("general")
    assert active.version == wins[0].version
    loser = c2 if active.version == c1.version else c1
    assert a.specs.get("general", "global", loser.version).status is SpecStatus.CANDIDATE  # kept
    assert a.specs.head_revision("general", "global") == rev + 1


def test_rollback_restores_the_previous_text(two_stores):
    a, b = two_stores
    old = a.specs.active("general")
    new = a.specs.propose("general", "tenant:y", "Refuse weapon instructions.", parent=None)
    a.specs.activate("general", "tenant:y", new.version, expected_revision=0)
    newer = b.specs.propose("general", "tenant:y", "Refuse weapon and drug instructions.",
                            parent=new.version)
    b.specs.activate("general", "tenant:y", newer.version,
                     expected_revision=b.specs.head_revision("general", "tenant:y"))
    assert a.specs.active("general", "tenant:y").text == "Refuse weapon and drug instructions."
    back = a.specs.rollback("general", "tenant:y")
    assert back.version == new.version
    assert b.specs.active("general", "tenant:y").text == "Refuse weapon instructions."
    assert a.specs.active("general").text == old.text  # the global spec is untouched


def _one_active(store: Store, name: str, scope: str) -> int:
    """The head's version, after checking that it is the one version marked active."""
    head = store.specs.active(name, scope, inherit=False)
    marked = [v.version for v in store.specs.history(name, scope) if v.status is SpecStatus.ACTIVE]
    assert marked == [head.version], (marked, head.version)
    return head.version


def test_a_rollback_racing_an_activation_rolls_back_the_head_it_read(two_stores):
    """Each round: v(n) is active with parent v(n-1); one replica rolls back while the other
    activates a new child of v(n) by compare-and-set. Either order is fine; what must never
    happen is a rollback that read the active version before the activation and its revision
    after it (the head going back to v(n-1) with the new version lost, or the wrong parent)."""
    a, b = two_stores
    name, scope = "general", "tenant:race"
    first = a.specs.propose(name, scope, "v1", parent=None, activate=True, expected_revision=0)
    top = a.specs.propose(name, scope, "v2", parent=first.version, activate=True,
                          expected_revision=1)
    outcomes = set()
    for i in range(6):
        child = b.specs.propose(name, scope, f"child {i}", parent=top.version)
        rev = b.specs.head_revision(name, scope)
        rolled, activated = _together(
            lambda: a.specs.rollback(name, scope),
            lambda c=child.version, r=rev: b.specs.activate(name, scope, c, expected_revision=r),
        )
        head = _one_active(a, name, scope)
        assert not isinstance(rolled, ConflictError)  # a rollback re-reads the head under its lock
        if isinstance(activated, ConflictError):  # the rollback went first: v(n) -> its parent
            outcomes.add("rollback first")
            assert head == top.parent == rolled.version
            assert a.specs.head_revision(name, scope) == rev + 1
        else:  # the activation went first: the rollback undid it, back to v(n)
            outcomes.add("activation first")
            assert rolled.version == top.version == head
            assert a.specs.head_revision(name, scope) == rev + 2
        # Next round from a fresh pair: a new child of the head becomes the head.
        top = a.specs.propose(name, scope, f"top {i}", parent=head, activate=True,
                              expected_revision=a.specs.head_revision(name, scope))
    print(f"\nrollback vs activation: {sorted(outcomes)}")


def test_concurrent_metric_updates_and_a_rejection_lose_nothing(two_stores):
    """Sixteen writers on two replicas each add their own metric to one candidate while a third
    rejects it: every metric and the rejection's reason are kept (a read-modify-write outside
    one transaction keeps only the last writer's dictionary)."""
    a, b = two_stores
    candidate = a.specs.propose("general", "tenant:metrics", "Refuse weapon recipes.", parent=None)
    v = candidate.version
    writers = [lambda s=s, i=i: s.specs.set_metrics("general", "tenant:metrics", v, {f"m{i}": i})
               for i in range(8) for s in (a, b)]
    def reject():
        return b.specs.reject("general", "tenant:metrics", v, reason="lost a canary",
                              metrics={"canary_pass_rate": 0.5})

    results = _together(*writers, reject)
    assert not [r for r in results if isinstance(r, Exception)]
    stored = a.specs.get("general", "tenant:metrics", v)
    assert stored.status is SpecStatus.REJECTED
    assert stored.metrics == {**{f"m{i}": i for i in range(8)}, "canary_pass_rate": 0.5,
                              "rejected_because": "lost a canary"}


def test_the_active_version_cannot_be_rejected_even_in_a_race(two_stores):
    """A rejection racing the activation of the same version: whichever runs first, the head
    is never a rejected version."""
    a, b = two_stores
    for i in range(4):
        scope = f"tenant:reject{i}"
        c = a.specs.propose("general", scope, f"candidate {i}", parent=None)
        activated, rejected = _together(
            lambda s=scope, v=c.version: a.specs.activate("general", s, v, expected_revision=0),
            lambda s=scope, v=c.version: b.specs.reject("general", s, v, reason="raced"),
        )
        stored = b.specs.get("general", scope, c.version)
        if isinstance(rejected, ConflictError):  # activation first: the active version stays
            assert stored.status is SpecStatus.ACTIVE
        else:  # rejection first, then the activation made it active again, on purpose
            assert not isinstance(activated, Exception)
            assert stored.status is SpecStatus.ACTIVE
            assert stored.metrics["rejected_because"] == "raced"
        assert _one_active(a, "general", scope) == c.version
