"""User-profile-aware policies (U-SafeBench): profiles bound to users on the server side,
per-profile guidelines derived once by a model and approved by an admin, and their use in
generation (the remedy prompt) and in the checks (a profile-aware guard in front).

    from specguard.profiles import ComposedPolicy, DirectoryAdmin
    policy = ComposedPolicy(Policy.load("policy.yaml"), store)   # file + admin-managed store
    admin = DirectoryAdmin(policy, backend)
    gs = await admin.derive("hepatitis", actor="me"); admin.approve("hepatitis", gs.version, "me")
"""

from ..policy import AgeBand, GuidelineUse, Profile, ProfileAttributes
from ..store import GuidelineSet, GuidelineStatus
from ._admin import (
    GuidelinesIn,
    InvalidReferenceError,
    KeyCreated,
    KeyIn,
    KeyOut,
    DirectoryAdmin,
    ProfileIn,
    ProfileOut,
    ProfilePatch,
    UserIn,
    UserOut,
    UserPatch,
)
from ._cache import GuidelineCache
from ._composed import ComposedPolicy, compose
from ._derive import derive_guidelines, guideline_prompt, parse_guidelines, remedy_prompt
from ._match import CATEGORY, GuidelineMatcher, ProfileAwareGuard, content_words

__all__ = [
    "CATEGORY",
    "AgeBand",
    "ComposedPolicy",
    "GuidelineCache",
    "GuidelineMatcher",
    "GuidelineSet",
    "GuidelineStatus",
    "GuidelineUse",
    "GuidelinesIn",
    "InvalidReferenceError",
    "KeyCreated",
    "KeyIn",
    "KeyOut",
    "Profile",
    "DirectoryAdmin",
    "ProfileAttributes",
    "ProfileAwareGuard",
    "ProfileIn",
    "ProfileOut",
    "ProfilePatch",
    "UserIn",
    "UserOut",
    "UserPatch",
    "compose",
    "content_words",
    "derive_guidelines",
    "guideline_prompt",
    "parse_guidelines",
    "remedy_prompt",
]
