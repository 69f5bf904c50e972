"""Concurrent writers on one real SQLite file (two Store objects = two replicas): proposals
never share a version number, compare-and-set activations let exactly one writer win, and a
rollback restores the previous text."""

from __future__ import annotations

import threading

import pytest

from specguard.errors import ConflictError
from specguard.spec import SpecStatus
from specguard.store import Store


@pytest.fixture
def two_stores(tmp_path):
    path = str(tmp_path / "race.db")
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
