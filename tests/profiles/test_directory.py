"""Store-managed profiles, users and keys composed with the policy file (real SQLite files)."""

from __future__ import annotations

import pytest

from specguard.errors import AuthenticationError, ConflictError, NotFoundError
from specguard.policy import Policy, hash_key
from specguard.profiles import (
    ComposedPolicy,
    InvalidReferenceError,
    KeyIn,
    DirectoryAdmin,
    ProfileIn,
    ProfilePatch,
    UserIn,
    UserPatch,
)
from specguard.store import Store

FILE = {
    "defaults": {"max_tokens": 64},
    "tenants": {"default": {}, "acme": {"settings": {"critique": "always"}}},
    "profiles": {"teen": {"text": "I am 15 years old.", "attributes": {"age_band": "13-17"},
                          "settings": {"max_tokens": 32}}},
    "users": {"filed": {"tenant": "acme", "profile": "teen"}},
    "api_keys": [{"name": "file-key", "sha256": hash_key("sg-file"), "tenant": "acme", "user": "filed"}],
}


@pytest.fixture
def admin(tmp_path):
    store = Store(str(tmp_path / "specguard.db"), seed_builtin=False)
    yield DirectoryAdmin(ComposedPolicy(Policy.from_dict(FILE), store))
    store.close()


def test_store_users_profiles_and_keys_are_seen_by_authenticate_and_resolve(admin):
    admin.create_profile(ProfileIn(id="hep", text="I have hepatitis.",
                                   attributes={"health_conditions": ["hepatitis"]},
                                   settings={"max_tokens": 48}), actor="t")
    admin.create_user(UserIn(id="alice", tenant="acme", profile="hep", settings={"max_tokens": 40}), actor="t")
    created = admin.create_key(KeyIn(name="alice-key", user="alice"), actor="t")
    assert created.key.startswith("sg-") and created.tenant == "acme"  # the user's tenant

    policy = admin.policy
    caller = policy.authenticate(created.key)
    assert (caller.tenant, caller.user, caller.admin) == ("acme", "alice", False)
    resolved = policy.resolve("acme", "alice")
    assert resolved.profile_id == "hep" and resolved.profile.attributes.health_conditions == ["hepatitis"]
    assert resolved.settings.max_tokens == 40 and resolved.sources["max_tokens"] == "user:alice"
    assert resolved.sources["critique"] == "tenant:acme"
    # the file's entries still work
    assert policy.authenticate("sg-file").user == "filed"
    assert policy.resolve("acme", "filed").settings.max_tokens == 32


def test_the_clear_key_is_never_stored(admin, tmp_path):
    created = admin.create_key(KeyIn(name="k", tenant="default"), actor="t")
    data = b"".join(f.read_bytes() for f in tmp_path.glob("specguard.db*"))  # the file and its WAL
    assert created.key.encode() not in data
    assert hash_key(created.key).encode() in data


def test_a_store_entry_overrides_the_file_and_deleting_it_brings_the_file_back(admin):
    admin.update_profile("teen", ProfilePatch(settings={"max_tokens": 20}), actor="t")
    assert admin.profile("teen").origin == "store"
    assert admin.policy.resolve("acme", "filed").settings.max_tokens == 20
    admin.delete_profile("teen", actor="t")
    assert admin.profile("teen").origin == "file"
    assert admin.policy.resolve("acme", "filed").settings.max_tokens == 32


def test_file_entries_cannot_be_deleted_at_run_time(admin):
    with pytest.raises(ConflictError):
        admin.delete_user("filed", actor="t")
    with pytest.raises(ConflictError):
        admin.delete_key("file-key", actor="t")


def test_references_are_checked_before_anything_is_written(admin):
    with pytest.raises(InvalidReferenceError):
        admin.create_user(UserIn(id="bob", tenant="nope"), actor="t")
    with pytest.raises(InvalidReferenceError):
        admin.create_user(UserIn(id="bob", tenant="acme", profile="nope"), actor="t")
    with pytest.raises(InvalidReferenceError):
        admin.create_profile(ProfileIn(id="bad", text="x", settings={"max_tokens": "many"}), actor="t")
    with pytest.raises(InvalidReferenceError):
        admin.create_key(KeyIn(name="k", user="ghost"), actor="t")
    assert admin.store.users.users() == {} and admin.store.users.profiles() == {}
    assert admin.audit() == []


def test_conflicts_and_unknown_ids(admin):
    admin.create_user(UserIn(id="bob", tenant="acme"), actor="t")
    with pytest.raises(ConflictError):
        admin.create_user(UserIn(id="bob", tenant="acme"), actor="t")
    with pytest.raises(ConflictError):
        admin.create_user(UserIn(id="filed", tenant="acme"), actor="t")
    with pytest.raises(NotFoundError):
        admin.update_user("ghost", UserPatch(tenant="acme"), actor="t")
    with pytest.raises(NotFoundError):
        admin.delete_profile("ghost", actor="t")
    admin.create_profile(ProfileIn(id="p", text="I am pregnant."), actor="t")
    admin.update_user("bob", UserPatch(profile="p"), actor="t")
    with pytest.raises(ConflictError):  # still in use by bob
        admin.delete_profile("p", actor="t")
    admin.update_user("bob", UserPatch(profile=None), actor="t")
    admin.delete_profile("p", actor="t")


def test_deleting_a_user_revokes_its_keys(admin):
    admin.create_user(UserIn(id="bob", tenant="acme"), actor="t")
    key = admin.create_key(KeyIn(name="bob-key", user="bob"), actor="t").key
    assert admin.policy.authenticate(key).user == "bob"
    admin.delete_user("bob", actor="t")
    with pytest.raises(AuthenticationError):
        admin.policy.authenticate(key)


def test_every_change_is_audited_with_who_and_when(admin):
    admin.create_profile(ProfileIn(id="p", text="I have asthma."), actor="key:root")
    admin.create_user(UserIn(id="u", tenant="default", profile="p"), actor="key:root")
    admin.create_key(KeyIn(name="u-key", user="u"), actor="cli:ann")
    admin.delete_user("u", actor="key:root")
    log = admin.audit()
    assert [(r["actor"], r["action"], r["target"]) for r in reversed(log)] == [
        ("key:root", "profile.create", "profile:p"),
        ("key:root", "user.create", "user:u"),
        ("cli:ann", "api_key.create", "api_key:u-key"),
        ("key:root", "user.delete", "user:u"),
    ]
    assert all(r["at"] is not None for r in log)
    assert "sg-" not in str(log)  # no clear key in the audit log


def test_a_second_process_sees_changes_after_its_cache_time(tmp_path):
    path = str(tmp_path / "shared.db")
    writer = DirectoryAdmin(ComposedPolicy(Policy.from_dict(FILE), Store(path, seed_builtin=False)))
    reader = ComposedPolicy(Policy.from_dict(FILE), Store(path, seed_builtin=False), ttl_s=0.0)
    assert reader.resolve("acme", "late").profile_id is None
    writer.create_user(UserIn(id="late", tenant="acme", profile="teen"), actor="t")
    assert reader.resolve("acme", "late").profile_id == "teen"
