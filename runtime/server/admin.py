"""The admin API under /admin: users, profiles, API keys, derived guidelines, specs, audit log.

Only admin keys may call it: 401 without a valid key, 403 with a non-admin key. An admin key
acts inside its own tenant (reads are filtered to it, writes elsewhere are 403); an operator
key acts everywhere (specguard.directory has the rules). Every change is written to the audit
log in the same transaction as the change. Every store call runs on the store's threads, never
on the event loop. The model that derives guidelines is `app.state.guideline_backend` when set,
else the runtime's `guidelines` role (the policy's roles table or --role; by default the serving
model). The routes are left out of /openapi.json and /docs.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from ..directory import (
    DirectoryAdmin,
    GuidelinesIn,
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
    SpecAdmin,
    SpecIn,
    UserIn,
    UserOut,
    UserPatch,
)
from ..errors import ConfigError
from ..policy import Caller
from ..roles import RoleName
from ..spec import GLOBAL_SCOPE, Spec
from ..store import GuidelineSet
from .auth import authenticate, require_admin

router = APIRouter(prefix="/admin", tags=["admin"], include_in_schema=False)

Id = Annotated[str, Path(min_length=1, max_length=128)]
SpecName = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_\-]{0,127}$")]
Version = Annotated[int, Path(ge=1, le=2**31 - 1)]
After = Annotated[str | None, Query(min_length=1, max_length=128)]
Limit = Annotated[int, Query(ge=1, le=1000)]
ScopeQ = Annotated[str, Query(min_length=1, max_length=256)]


async def admin_caller(caller: Caller = Depends(authenticate)) -> Principal:
    return Principal.of(require_admin(caller))


def _admin(request: Request) -> DirectoryAdmin:
    runtime = request.app.state.runtime
    backend = getattr(request.app.state, "guideline_backend", None) or \
        runtime.roles.get(RoleName.GUIDELINES)
    return DirectoryAdmin(runtime.policy, backend)


async def _run(request: Request, fn, *args, **kwargs):
    """A blocking directory call, on the store's threads."""
    return await request.app.state.runtime.store.run(fn, *args, **kwargs)


async def _listing(request: Request, fn, *args, **kwargs) -> Response:
    """A listing, read and turned into JSON on the store's threads (a page of a thousand
    entries takes milliseconds to serialize: not on the event loop)."""
    def read() -> bytes:
        out = fn(*args, **kwargs)
        if isinstance(out, list):
            return b"[" + b",".join(x.model_dump_json().encode() for x in out) + b"]"
        return out.model_dump_json().encode()

    return Response(await _run(request, read), media_type="application/json")


# -- profiles ----------------------------------------------------------------------------------


@router.get("/profiles", response_model=Page[ProfileOut])
async def list_profiles(request: Request, after: After = None, limit: Limit = 100,
                        who: Principal = Depends(admin_caller)):
    return await _listing(request, _admin(request).profiles, who, after=after, limit=limit)


@router.post("/profiles", response_model=ProfileOut, status_code=201)
async def create_profile(body: ProfileIn, request: Request, who: Principal = Depends(admin_caller)):
    return await _run(request, _admin(request).create_profile, body, who)


@router.get("/profiles/{profile_id}", response_model=ProfileOut)
async def get_profile(request: Request, profile_id: Id, who: Principal = Depends(admin_caller)):
    return await _run(request, _admin(request).profile, profile_id, who)


@router.patch("/profiles/{profile_id}", response_model=ProfileOut)
async def update_profile(body: ProfilePatch, request: Request, profile_id: Id,
                         who: Principal = Depends(admin_caller)):
    return await _run(request, _admin(request).update_profile, profile_id, body, who)


@router.delete("/profiles/{profile_id}", status_code=204)
async def delete_profile(request: Request, profile_id: Id, who: Principal = Depends(admin_caller)):
    await _run(request, _admin(request).delete_profile, profile_id, who)
    return Response(status_code=204)


# -- users -------------------------------------------------------------------------------------


@router.get("/users", response_model=Page[UserOut])
async def list_users(request: Request, after: After = None, limit: Limit = 100,
                     who: Principal = Depends(admin_caller)):
    return await _listing(request, _admin(request).users, who, after=after, limit=limit)


@router.post("/users", response_model=UserOut, status_code=201)
async def create_user(body: UserIn, request: Request, who: Principal = Depends(admin_caller)):
    return await _run(request, _admin(request).create_user, body, who)


@router.get("/users/{user_id}", response_model=UserOut)
async def get_user(request: Request, user_id: Id, who: Principal = Depends(admin_caller)):
    return await _run(request, _admin(request).user, user_id, who)


@router.patch("/users/{user_id}", response_model=UserOut)
async def update_user(body: UserPatch, request: Request, user_id: Id,
                      who: Principal = Depends(admin_caller)):
    return await _run(request, _admin(request).update_user, user_id, body, who)


@router.delete("/users/{user_id}", status_code=204)
async def delete_user(request: Request, user_id: Id, who: Principal = Depends(admin_caller)):
    await _run(request, _admin(request).delete_user, user_id, who)
    return Response(status_code=204)


@router.get("/users/{user_id}/policy")
async def explain_user(request: Request, user_id: Id,
                       who: Principal = Depends(admin_caller)) -> dict[str, Any]:
    """The user's resolved policy and the layer each setting came from."""
    admin = _admin(request)
    u = await _run(request, admin.user, user_id, who)
    rows = admin.policy.explain(u.tenant, user_id)
    return {"tenant": u.tenant, "user": user_id, "profile": u.profile,
            "settings": [{"setting": p, "value": v, "source": s} for p, v, s in rows]}


# -- API keys ----------------------------------------------------------------------------------


@router.get("/api-keys", response_model=Page[KeyOut])
async def list_keys(request: Request, after: After = None, limit: Limit = 100,
                    who: Principal = Depends(admin_caller)):
    return await _listing(request, _admin(request).keys, who, after=after, limit=limit)


@router.post("/api-keys", response_model=KeyCreated, status_code=201)
async def create_key(body: KeyIn, request: Request, who: Principal = Depends(admin_caller)):
    return await _run(request, _admin(request).create_key, body, who)


@router.delete("/api-keys/{name}", status_code=204)
async def delete_key(request: Request, name: Id, who: Principal = Depends(admin_caller)):
    await _run(request, _admin(request).delete_key, name, who)
    return Response(status_code=204)


# -- derived guidelines ------------------------------------------------------------------------


@router.get("/profiles/{profile_id}/guidelines", response_model=list[GuidelineSet])
async def guideline_history(request: Request, profile_id: Id,
                            who: Principal = Depends(admin_caller)):
    return await _listing(request, _admin(request).guidelines, profile_id, who)


@router.post("/profiles/{profile_id}/guidelines/derive", response_model=GuidelineSet, status_code=201)
async def derive_guidelines(request: Request, profile_id: Id,
                            who: Principal = Depends(admin_caller)):
    """Ask the guidelines role's model for the profile's guidelines; stored as a new draft."""
    admin = _admin(request)
    if admin.backend is None:
        raise ConfigError("The guidelines role is off on this server: no model derives guidelines.",
                          hint="Name a model for it (roles: guidelines: ... in the policy, or "
                               "--role guidelines=URI), or draft from the guideline library: "
                               f"POST /admin/profiles/{profile_id}/guidelines/library.")
    return await admin.derive(profile_id, who)


@router.post("/profiles/{profile_id}/guidelines/library", response_model=GuidelineSet,
             status_code=201)
async def draft_guidelines_from_library(body: LibraryDraftIn, request: Request, profile_id: Id,
                                        who: Principal = Depends(admin_caller)):
    """The guideline library's guidelines for the profile's attributes (named in the body, or
    the profile's own, or suggested by its text); stored as a new draft version."""
    return await _admin(request).draft_from_library(profile_id, body, who)


@router.get("/guideline-library", response_model=list[LibraryAttributeOut])
async def guideline_library(who: Principal = Depends(admin_caller)):
    """The curated guideline library: attributes and their guidelines."""
    return DirectoryAdmin.guideline_library()


@router.post("/profiles/{profile_id}/guidelines", response_model=GuidelineSet, status_code=201)
async def edit_guidelines(body: GuidelinesIn, request: Request, profile_id: Id,
                          who: Principal = Depends(admin_caller)):
    """An admin's own (edited) list, stored as a new draft version."""
    return await _run(request, _admin(request).edit, profile_id, body, who)


@router.post("/profiles/{profile_id}/guidelines/{version}/approve", response_model=GuidelineSet)
async def approve_guidelines(request: Request, profile_id: Id, version: Version,
                             who: Principal = Depends(admin_caller)):
    return await _run(request, _admin(request).approve, profile_id, version, who)


# -- specs -------------------------------------------------------------------------------------


def _specs(request: Request) -> SpecAdmin:
    return SpecAdmin(request.app.state.runtime.store)


@router.get("/specs", response_model=list[Spec])
async def list_specs(request: Request, who: Principal = Depends(admin_caller)):
    """The active version of every spec in the scopes this key may read."""
    return await _listing(request, _specs(request).active, who)


@router.get("/specs/{name}", response_model=list[Spec])
async def spec_history(request: Request, name: SpecName, scope: ScopeQ = GLOBAL_SCOPE,
                       who: Principal = Depends(admin_caller)):
    return await _listing(request, _specs(request).history, name, scope, who)


@router.post("/specs/{name}", response_model=Spec, status_code=201)
async def propose_spec(body: SpecIn, request: Request, name: SpecName,
                       who: Principal = Depends(admin_caller)):
    """A new version written by an admin (a candidate; `activate: true` makes it active)."""
    return await _run(request, _specs(request).propose, name, body, who)


@router.post("/specs/{name}/versions/{version}/activate", response_model=Spec)
async def activate_spec(request: Request, name: SpecName, version: Version,
                        scope: ScopeQ = GLOBAL_SCOPE,
                        expected_revision: int | None = Query(None, ge=0, le=2**31 - 1),
                        who: Principal = Depends(admin_caller)):
    """Make a version active (also how a learned MetaSC candidate is approved)."""
    return await _run(request, _specs(request).activate, name, scope, version, who,
                      expected_revision=expected_revision)


@router.post("/specs/{name}/rollback", response_model=Spec)
async def rollback_spec(request: Request, name: SpecName, scope: ScopeQ = GLOBAL_SCOPE,
                        who: Principal = Depends(admin_caller)):
    return await _run(request, _specs(request).rollback, name, scope, who)


# -- audit -------------------------------------------------------------------------------------


@router.get("/audit")
async def audit(request: Request, limit: Limit = 100,
                before: int | None = Query(None, ge=1, le=2**62),
                who: Principal = Depends(admin_caller)) -> list[dict[str, Any]]:
    """The newest entries first (this key's tenant only, unless an operator's); `before` an
    entry id for the next page."""
    def read() -> bytes:
        rows = _admin(request).audit(limit, who, before=before)
        return json.dumps([{**r, "at": r["at"].isoformat()} for r in rows]).encode()

    return Response(await _run(request, read), media_type="application/json")
