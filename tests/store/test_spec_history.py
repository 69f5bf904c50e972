from __future__ import annotations

import os
import sqlite3

import pytest

from specguard.errors import ConflictError, NotFoundError
from specguard.spec import SpecStatus, builtin_specs, diff_specs, scope_for
from specguard.store import Store


POSTGRES_URL = os.environ.get("SPECGUARD_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    """The same tests on a SQLite file and, when scripts/test.sh started one, on PostgreSQL."""
    if request.param == "sqlite":
        s = Store(str(tmp_path / "specs.db"))
    else:
        if not POSTGRES_URL:
            pytest.skip("no PostgreSQL: set SPECGUARD_TEST_POSTGRES_URL (scripts/test.sh does)")
        from specguard.store._schema import metadata
        from specguard.store._engine import make_engine

        engine = make_engine(POSTGRES_URL)
        metadata.drop_all(engine)  # each test starts from an empty database
        engine.dispose()
        s = Store(POSTGRES_URL)
    yield s
    s.close()


def test_builtin_specs_are_seeded_once_and_active(store):
    names = set(builtin_specs())
    assert {"general", "weapons_violence", "self_harm", "hate_harassment", "sexual_minors",
            "privacy", "honesty"} <= names
    assert {s.name for s in store.specs.list_active()} == names
    again = Store(store.url)
    assert len(again.specs.history("general")) == 1
    again.close()


def test_sqlite_file_uses_wal(tmp_path):
    Store(str(tmp_path / "specs.db")).specs.active("general")
    con = sqlite3.connect(tmp_path / "specs.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_history_activate_diff_and_rollback(store):
    v1 = store.specs.active("general")
    v2 = store.specs.propose("general", "global", "Refuse weapons.", parent=v1.version)
    assert v2.status is SpecStatus.CANDIDATE and v2.version == 2
    assert store.specs.active("general").version == 1  # candidates do not serve
    store.specs.activate("general", "global", 2)
    assert store.specs.active("general").text == "Refuse weapons."
    assert store.specs.get("general", "global", 1).status is SpecStatus.RETIRED
    assert "+Refuse weapons." in diff_specs(v1, store.specs.get("general", "global", 2))
    back = store.specs.rollback("general")
    assert back.version == 1 and store.specs.active("general").text == v1.text
    assert [s.version for s in store.specs.history("general")] == [1, 2]
    actions = [a["action"] for a in store.audit()]
    assert actions[:3] == ["spec.activate", "spec.activate", "spec.propose"]


def test_compare_and_set_refuses_a_stale_writer(store):
    rev = store.specs.head_revision("general", "global")
    v2 = store.specs.propose("general", "global", "A", parent=1)
    v3 = store.specs.propose("general", "global", "B", parent=1)
    store.specs.activate("general", "global", v2.version, expected_revision=rev)
    with pytest.raises(ConflictError):
        store.specs.activate("general", "global", v3.version, expected_revision=rev)
    assert store.specs.active("general").text == "A"


def test_scopes_inherit_global_until_they_have_their_own(store):
    assert store.specs.active("general", "tenant:acme").scope == "global"
    v = store.specs.propose("general", "tenant:acme", "Acme spec.", parent=None)
    store.specs.activate("general", "tenant:acme", v.version)
    assert store.specs.active("general", "tenant:acme").text == "Acme spec."
    assert store.specs.active("general").text != "Acme spec."
    assert store.specs.active("general", "tenant:other").scope == "global"
    # a profile scope inside the tenant inherits the tenant's spec, not just the global one
    assert store.specs.active("general", scope_for(tenant="acme", profile="teen")).text == "Acme spec."
    assert scope_for(tenant="acme", profile="teen") != scope_for(tenant="other", profile="teen")


def test_rejected_candidates_keep_their_reason(store):
    v = store.specs.propose("general", "global", "Bad.", parent=1)
    store.specs.reject("general", "global", v.version, reason="safety dropped", metrics={"safety": 0.1})
    got = store.specs.get("general", "global", v.version)
    assert got.status is SpecStatus.REJECTED
    assert got.metrics == {"safety": 0.1, "rejected_because": "safety dropped"}


def test_missing_things_say_what_to_do(store):
    with pytest.raises(NotFoundError, match="spec list"):
        store.specs.active("nope")
    with pytest.raises(NotFoundError, match="no parent"):
        store.specs.rollback("general")
