"""Human users: who they are in the project, registered from their Firebase Authentication account.

A user's ID is derived from its Firebase UID (``ids.user_id_of``), so resolving
an ID token reads exactly one record, and registering the same account twice is
a ``409`` by construction. Disabling a user cascades without a write to anything
else: every token with that user as ``sub``, every grant from the user, and every
check read the user's record and refuse once it is disabled.
"""

from __future__ import annotations

from typing import Any

from shared import agents, change, clock, errors, ids, records, schema, store
from shared.principal import Principal
from shared.records import UserRecord


class CreateUser(schema.Body):
    firebase_uid: schema.Identifier
    tenant_id: schema.TenantId = agents.DEFAULT_TENANT
    display_name: schema.DisplayName | None = None


class GetUser(schema.Body):
    user_id: schema.Identifier | None = None


class ListUsers(schema.Body):
    tenant_id: schema.TenantId | None = None
    page_size: schema.PageSize = 50
    page_token: schema.PageToken | None = None


class UpdateUser(schema.Body):
    user_id: schema.Identifier
    display_name: schema.DisplayName | None = None
    disabled: bool | None = None


def public(user: UserRecord) -> dict[str, Any]:
    return {
        "user_id": user["user_id"],
        "firebase_uid": user["firebase_uid"],
        "tenant_id": user["tenant_id"],
        "display_name": user["display_name"],
        "disabled": user["disabled"],
        "created_at": clock.rfc3339(user["created_at"]),
    }


def create(body: CreateUser, principal: Principal) -> dict[str, Any]:
    user_id = ids.user_id_of(body.firebase_uid)
    path = records.user_path(user_id)

    def work(c: change.Change) -> UserRecord:
        if c[path] is not None:
            raise errors.Conflict("This Firebase account is already registered.")
        user: UserRecord = {
            "user_id": user_id,
            "firebase_uid": body.firebase_uid,
            "tenant_id": body.tenant_id,
            "display_name": body.display_name,
            "disabled": False,
            "created_at": c.now,
        }
        c.create(path, user)
        c.record("user.create", {"kind": "user", "user_id": user_id, "tenant_id": body.tenant_id})
        return user

    return public(change.apply(principal, [path], work))


def get(user_id: str | None, principal: Principal) -> dict[str, Any]:
    if principal.kind == "user":
        if user_id is not None and user_id != principal.user_id:
            raise errors.NotFound()  # another user's ID answers as one never made
        assert principal.user is not None
        return public(principal.user)  # read while resolving the credential
    if user_id is None:
        raise errors.InvalidRequest("user_id: required with the bridge key")
    if not ids.is_user_id(user_id):
        raise errors.NotFound()
    user: UserRecord | None = store.get_many([records.user_path(user_id)])[0]
    if user is None:
        raise errors.NotFound()
    return public(user)


def list_users(body: ListUsers) -> dict[str, Any]:
    if body.page_token is not None and not ids.is_user_id(body.page_token):
        raise errors.InvalidRequest("page_token: not a token from a previous page")
    found, next_token = store.tenant_page(
        records.USERS, tenant_id=body.tenant_id, after_id=body.page_token, page_size=body.page_size
    )
    return {"users": [public(user) for user in found], "next_page_token": next_token}


def update(body: UpdateUser, principal: Principal) -> dict[str, Any]:
    if not ids.is_user_id(body.user_id):
        raise errors.NotFound()
    path = records.user_path(body.user_id)

    def work(c: change.Change) -> UserRecord:
        user: UserRecord | None = c[path]
        if user is None:
            raise errors.NotFound()
        changed = []
        if body.display_name is not None and body.display_name != user["display_name"]:
            user["display_name"] = body.display_name
            changed.append("display_name")
        if body.disabled is not None and body.disabled != user["disabled"]:
            user["disabled"] = body.disabled
            changed.append("disabled")
        if changed:
            c.set(path, user)
            c.record("user.update", {"kind": "user", "user_id": body.user_id, "changes": sorted(changed)})
        return user

    return public(change.apply(principal, [path], work))
