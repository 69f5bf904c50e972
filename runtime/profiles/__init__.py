"""User-profile-aware policies (U-SafeBench): profiles bound to users on the server side,
per-profile guidelines (drafted from the curated guideline library, or derived by a capable
model, then edited and approved by an admin), and their use in generation (the remedy prompt)
and in the checks: the profile check (a trained scorer of (profile, request) pairs through the
library, and the semantic match of the request against the approved guidelines) runs before the
general guard for users with a profile.

    from specguard.directory import ComposedPolicy, DirectoryAdmin
    policy = ComposedPolicy(Policy.load("policy.yaml"), store)   # file + admin-managed store
    admin = DirectoryAdmin(policy, backend)
    gs = await admin.derive("hepatitis", actor="me"); admin.approve("hepatitis", gs.version, "me")

Who may manage profiles, users and keys (and the composed view of the policy file and the
store) lives in specguard.directory; its names are also reachable from here.
"""

from .._lazy import lazy_exports
from ..policy import AgeBand, GuidelineUse, Profile, ProfileAttributes
from ..store import GuidelineSet, GuidelineStatus
from ._cache import GuidelineCache
from ._check import ProfileCheck, ProfileCheckArtifact, ProfileMatch, load_profile_check
from ._derive import derive_guidelines, guideline_prompt, parse_guidelines, remedy_prompt
from ._library import AttributeKind, GuidelineLibrary, LibraryAttribute, LibraryGuideline, load_library
from ._match import (
    CATEGORY,
    CHECKER,
    MATCHER,
    GuidelineMatcher,
    ProfileAwareGuard,
    profile_match,
    profile_refusal,
)

# The directory's names, as they were reachable here before it had its own package (loaded on
# first use: specguard.directory imports from this package).
_DIRECTORY = {name: "..directory" for name in (
    "ComposedPolicy", "DirectoryAdmin", "GuidelinesIn", "InvalidReferenceError", "KeyCreated",
    "KeyIn", "KeyOut", "ProfileIn", "ProfileOut", "ProfilePatch", "UserIn", "UserOut", "UserPatch",
)}
__getattr__, __dir__ = lazy_exports(__name__, globals(), {k: v[1:] for k, v in _DIRECTORY.items()})

__all__ = [
    "CATEGORY",
    "CHECKER",
    "MATCHER",
    "AgeBand",
    "AttributeKind",
    "GuidelineCache",
    "GuidelineLibrary",
    "GuidelineMatcher",
    "GuidelineSet",
    "GuidelineStatus",
    "GuidelineUse",
    "LibraryAttribute",
    "LibraryGuideline",
    "Profile",
    "ProfileAttributes",
    "ProfileAwareGuard",
    "ProfileCheck",
    "ProfileCheckArtifact",
    "ProfileMatch",
    "derive_guidelines",
    "guideline_prompt",
    "load_library",
    "load_profile_check",
    "parse_guidelines",
    "profile_match",
    "profile_refusal",
    "remedy_prompt",
    *_DIRECTORY,
]
