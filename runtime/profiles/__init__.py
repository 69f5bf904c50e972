"""User-profile-aware policies (U-SafeBench): profiles bound to users on the server side,
per-profile guidelines derived once by a model and approved by an admin, and their use in
generation (the remedy prompt) and in the checks (a profile-aware guard in front).

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
from ._derive import derive_guidelines, guideline_prompt, parse_guidelines, remedy_prompt
from ._match import CATEGORY, GuidelineMatcher, ProfileAwareGuard, content_words

# The directory's names, as they were reachable here before it had its own package (loaded on
# first use: specguard.directory imports from this package).
_DIRECTORY = {name: "..directory" for name in (
    "ComposedPolicy", "DirectoryAdmin", "GuidelinesIn", "InvalidReferenceError", "KeyCreated",
    "KeyIn", "KeyOut", "ProfileIn", "ProfileOut", "ProfilePatch", "UserIn", "UserOut", "UserPatch",
)}
__getattr__, __dir__ = lazy_exports(__name__, globals(), {k: v[1:] for k, v in _DIRECTORY.items()})

__all__ = [
    "CATEGORY",
    "AgeBand",
    "GuidelineCache",
    "GuidelineMatcher",
    "GuidelineSet",
    "GuidelineStatus",
    "GuidelineUse",
    "Profile",
    "ProfileAttributes",
    "ProfileAwareGuard",
    "content_words",
    "derive_guidelines",
    "guideline_prompt",
    "parse_guidelines",
    "remedy_prompt",
    *_DIRECTORY,
]
