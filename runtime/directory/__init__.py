"""The directory: who is who and who may change what. The policy file declares tenants,
defaults and any fixed profiles, users and keys; the store adds those an admin manages at run
time (`ComposedPolicy` composes the two, cached by the store's revision); `DirectoryAdmin` is
every admin operation, for the /admin API and `specguard admin`, scoped by the caller's rights
(an admin acts in its own tenant, an operator everywhere).

    from specguard.directory import ComposedPolicy, DirectoryAdmin, Principal
    policy = ComposedPolicy(Policy.load("policy.yaml"), store)
    admin = DirectoryAdmin(policy, backend)
    admin.create_user(UserIn(id="ann", profile="teen"), Principal.of(caller))
"""

from ._admin import (
    DirectoryAdmin,
    GuidelinesIn,
    InvalidReferenceError,
    KeyCreated,
    KeyIn,
    KeyOut,
    LibraryAttributeOut,
    LibraryDraftIn,
    Page,
    Principal,
    ProfileIn,
    ProfileOut,
    ProfilePatch,
    UserIn,
    UserOut,
    UserPatch,
)
from ._composed import ComposedPolicy, compose_snapshot
from ._specs import SpecAdmin, SpecIn

__all__ = [
    "ComposedPolicy",
    "DirectoryAdmin",
    "GuidelinesIn",
    "InvalidReferenceError",
    "KeyCreated",
    "KeyIn",
    "KeyOut",
    "LibraryAttributeOut",
    "LibraryDraftIn",
    "Page",
    "Principal",
    "ProfileIn",
    "ProfileOut",
    "ProfilePatch",
    "SpecAdmin",
    "SpecIn",
    "UserIn",
    "UserOut",
    "UserPatch",
    "compose_snapshot",
]
