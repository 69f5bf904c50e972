"""The admin API under /admin: users, profiles, API keys and derived guidelines.

Only admin keys (ApiKey.admin) may call it: 401 without a valid key, 403 with a non-admin key.
Every change is written to the audit log (who: the admin key's name; when: the time of the
commit) in the same transaction as the change. The model that derives guidelines is
`app.state.guideline_backend` when set, else the runtime's backend.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response

from ..policy import Caller
from ..profiles import (
    GuidelineSet,
    GuidelinesIn,
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
from .auth import authenticate, require_admin

router = APIRouter(prefix="/admin", tags=["admin"])


async def admin_caller(caller: Caller = Depends(authenticate)) -> Caller:
    return require_admin(caller)


def _admin(request: Request) -> DirectoryAdmin:
    runtime = request.app.state.runtime
    backend = getattr(request.app.state, "guideline_backend", None) or runtime.backend
    return DirectoryAdmin(runtime.policy, backend)


def _actor(caller: Caller) -> str:
    return f"key:{caller.key_name}"


# -- profiles ----------------------------------------------------------------------------------


@router.get("/profiles", response_model=list[ProfileOut])
async def list_profiles(request: Request, _: Caller = Depends(admin_caller)):
    return _admin(request).profiles()


@router.post("/profiles", response_model=ProfileOut, status_code=201)
async def create_profile(body: ProfileIn, request: Request, caller: Caller = Depends(admin_caller)):
    return _admin(request).create_profile(body, _actor(caller))


@router.get("/profiles/{profile_id}", response_model=ProfileOut)
async def get_profile(profile_id: str, request: Request, _: Caller = Depends(admin_caller)):
    return _admin(request).profile(profile_id)


@router.patch("/profiles/{profile_id}", response_model=ProfileOut)
async def update_profile(profile_id: str, body: ProfilePatch, request: Request,
                         caller: Caller = Depends(admin_caller)):
    return _admin(request).update_profile(profile_id, body, _actor(caller))


@router.delete("/profiles/{profile_id}", status_code=204)
async def delete_profile(profile_id: str, request: Request, caller: Caller = Depends(admin_caller)):
    _admin(request).delete_profile(profile_id, _actor(caller))
    return Response(status_code=204)


# -- users -------------------------------------------------------------------------------------


@router.get("/users", response_model=list[UserOut])
async def list_users(request: Request, _: Caller = Depends(admin_caller)):
    return _admin(request).users()


@router.post("/users", response_model=UserOut, status_code=201)
async def create_user(body: UserIn, request: Request, caller: Caller = Depends(admin_caller)):
    return _admin(request).create_user(body, _actor(caller))


@router.get("/users/{user_id}", response_model=UserOut)
async def get_user(user_id: str, request: Request, _: Caller = Depends(admin_caller)):
    return _admin(request).user(user_id)


@router.patch("/users/{user_id}", response_model=UserOut)
async def update_user(user_id: str, body: UserPatch, request: Request,
                      caller: Caller = Depends(admin_caller)):
    return _admin(request).update_user(user_id, body, _actor(caller))


@router.delete("/users/{user_id}", status_code=204)
async def delete_user(user_id: str, request: Request, caller: Caller = Depends(admin_caller)):
    _admin(request).delete_user(user_id, _actor(caller))
    return Response(status_code=204)


@router.get("/users/{user_id}/policy")
async def explain_user(user_id: str, request: Request, _: Caller = Depends(admin_caller)) -> dict[str, Any]:
    """The user's resolved policy and the layer each setting came from."""
    admin = _admin(request)
    u = admin.user(user_id)
    rows = admin.policy.explain(u.tenant, user_id)
    return {"tenant": u.tenant, "user": user_id, "profile": u.profile,
            "settings": [{"setting": p, "value": v, "source": s} for p, v, s in rows]}


# -- API keys ----------------------------------------------------------------------------------


@router.get("/api-keys", response_model=list[KeyOut])
async def list_keys(request: Request, _: Caller = Depends(admin_caller)):
    return _admin(request).keys()


@router.post("/api-keys", response_model=KeyCreated, status_code=201)
async def create_key(body: KeyIn, request: Request, caller: Caller = Depends(admin_caller)):
    return _admin(request).create_key(body, _actor(caller))


@router.delete("/api-keys/{name}", status_code=204)
async def delete_key(name: str, request: Request, caller: Caller = Depends(admin_caller)):
    _admin(request).delete_key(name, _actor(caller))
    return Response(status_code=204)


# -- derived guidelines ------------------------------------------------------------------------


@router.get("/profiles/{profile_id}/guidelines", response_model=list[GuidelineSet])
async def guideline_history(profile_id: str, request: Request, _: Caller = Depends(admin_caller)):
    return _admin(request).guidelines(profile_id)


@router.post("/profiles/{profile_id}/guidelines/derive", response_model=GuidelineSet, status_code=201)
async def derive_guidelines(profile_id: str, request: Request, caller: Caller = Depends(admin_caller)):
    """Ask the model for the profile's guidelines; stored as a new draft version."""
    return await _admin(request).derive(profile_id, _actor(caller))


@router.post("/profiles/{profile_id}/guidelines", response_model=GuidelineSet, status_code=201)
async def edit_guidelines(profile_id: str, body: GuidelinesIn, request: Request,
                          caller: Caller = Depends(admin_caller)):
    """An admin's own (edited) list, stored as a new draft version."""
    return _admin(request).edit(profile_id, body, _actor(caller))


@router.post("/profiles/{profile_id}/guidelines/{version}/approve", response_model=GuidelineSet)
async def approve_guidelines(profile_id: str, version: int, request: Request,
                             caller: Caller = Depends(admin_caller)):
    return _admin(request).approve(profile_id, version, _actor(caller))


# -- audit -------------------------------------------------------------------------------------


@router.get("/audit")
async def audit(request: Request, limit: int = Query(100, ge=1, le=1000),
                _: Caller = Depends(admin_caller)) -> list[dict[str, Any]]:
    rows = _admin(request).audit(limit)
    return [{**r, "at": r["at"].isoformat()} for r in rows]
