"""``delegate_of``: a user lets an agent of its tenant act for it, for some actions, for a bounded time.

One grant per user and agent: its ID names both (``ids.grant_id_of``), so a
check or a token of an agent acting for a user reads it by name, never by a
query. Granting again replaces the actions and the expiry of that one grant
(audited as a new grant). Ending it, or disabling the user or the agent, ends
at once every token and check that leans on it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import Field

from shared import change, clock, errors, ids, records, schema, store
from shared.principal import Principal
from shared.records import AgentRecord, UserGrantRecord, UserRecord

ACTIONS = ("read", "write", "delete", "share")
LIST_LIMIT = 1000
Action = Literal["read", "write", "delete", "share"]


class Grant(schema.Body):
    agent_id: schema.Identifier
    actions: Annotated[list[Action], Field(min_length=1, max_length=len(ACTIONS))]
    ttl_seconds: schema.SafeInt | None = None
    user_id: schema.Identifier | None = None  # with the bridge key; a user always grants for itself


class Revoke(schema.Body):
    grant_id: schema.Identifier


class ListGrants(schema.Body):
    pass


def public(grant: UserGrantRecord) -> dict[str, Any]:
    return {
        "grant_id": grant["grant_id"],
        "user_id": grant["user_id"],
        "agent_id": grant["agent_id"],
        "actions": list(grant["actions"]),
        "created_at": clock.rfc3339(grant["created_at"]),
        "expires_at": clock.rfc3339(grant["expires_at"]),
        "revoked_at": clock.rfc3339(grant["revoked_at"]),
    }


def grant(body: Grant, principal: Principal) -> dict[str, Any]:
    principal.require_user_or_bridge()
    user_id = principal.user_id if principal.kind == "user" else body.user_id
    if user_id is None:
        raise errors.InvalidRequest("user_id: required with the bridge key")
    if len(set(body.actions)) != len(body.actions):
        raise errors.InvalidRequest("actions: each action once")
    if not ids.is_user_id(user_id) or not ids.is_agent_id(body.agent_id):
        raise errors.NotFound()
    grant_id = ids.grant_id_of(user_id, body.agent_id)
    user_path, agent_path = records.user_path(user_id), records.agent_path(body.agent_id)
    path = records.user_grant_path(grant_id)

    def work(c: change.Change) -> UserGrantRecord:
        user: UserRecord | None = c[user_path]
        agent: AgentRecord | None = c[agent_path]
        if user is None or agent is None or agent["tenant_id"] != user["tenant_id"]:
            raise errors.NotFound()  # an agent of another tenant does not exist for the user
        longest = c.settings["user_delegation_max_ttl_seconds"]
        ttl = body.ttl_seconds if body.ttl_seconds is not None else longest
        if not 1 <= ttl <= longest:
            raise errors.InvalidRequest(f"ttl_seconds: must be between 1 and {longest}")
        record: UserGrantRecord = {
            "grant_id": grant_id,
            "user_id": user_id,
            "agent_id": body.agent_id,
            "tenant_id": user["tenant_id"],
            "actions": [a for a in ACTIONS if a in body.actions],
            "created_at": c.now,
            "expires_at": c.now + timedelta(seconds=ttl),
            "revoked_at": None,
        }
        c.set(path, record)
        c.record("user_delegation.grant", {**_target(record), "actions": record["actions"]})
        return record

    answer = public(change.apply(principal, [user_path, agent_path, path], work))
    del answer["revoked_at"]
    return answer


def _target(record: UserGrantRecord) -> dict[str, Any]:
    return {
        "kind": "user_grant",
        "grant_id": record["grant_id"],
        "user_id": record["user_id"],
        "agent_id": record["agent_id"],
    }


def revoke(body: Revoke, principal: Principal) -> dict[str, Any]:
    parties = ids.parties_of_grant(body.grant_id)
    mine = principal.is_bridge or (parties is not None and (principal.user_id, principal.agent_id) != (None, None))
    if (
        parties is None
        or not mine
        or not (principal.is_bridge or principal.user_id == parties[0] or principal.agent_id == parties[1])
    ):
        raise errors.NotFound()  # a grant the caller is no party to does not exist for it
    path = records.user_grant_path(body.grant_id)

    def work(c: change.Change) -> UserGrantRecord:
        record: UserGrantRecord | None = c[path]
        if record is None:
            raise errors.NotFound()
        if record["revoked_at"] is None:
            record["revoked_at"] = c.now
            c.set(path, record)
            c.record("user_delegation.revoke", _target(record))
        return record

    record = change.apply(principal, [path], work)
    return {"grant_id": body.grant_id, "revoked_at": clock.rfc3339(record["revoked_at"])}


def list_for(principal: Principal) -> dict[str, Any]:
    if principal.kind == "user":
        rows = store.query(records.USER_GRANTS, equals={"user_id": principal.user_id}, limit=LIST_LIMIT)
    else:
        principal.require_agent()
        rows = store.query(records.USER_GRANTS, equals={"agent_id": principal.subject(None)}, limit=LIST_LIMIT)
    return {"grants": [public(doc) for _, doc in rows]}
