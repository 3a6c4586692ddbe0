"""Delegations: one agent (the grantor) lets another of its tenant (the grantee)
act for it on a bounded set of routes, for a bounded time.

A delegation lives at ``delegations/{delegation_id}``, and its ID embeds the
grantor's ID. So a request carrying a device key and a delegation names four
documents up front (grantee, key, delegation, grantor) and credential
resolution reads them all in one round trip; see ``credentials``.
One hop only: a delegated request can never reach ``/delegate``, because
only the secrets routes may be delegated.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from shared import change, clock, errors, ids, read_ahead, records, schema, store
from shared.principal import Principal
from shared.records import AgentRecord, DelegationRecord

DELEGABLE_ROUTES = read_ahead.ROUTES
MIN_TTL_SECONDS = 60
LIST_LIMIT = 1000


class Grant(schema.Body):
    to_agent: schema.Identifier
    scope: Annotated[list[str], Field(min_length=1, max_length=len(DELEGABLE_ROUTES))]
    ttl_seconds: schema.SafeInt
    from_agent: schema.Identifier | None = None  # ignored: the grantor is always the caller


class Revoke(schema.Body):
    delegation_id: schema.Identifier


class ListDelegations(schema.Body):
    pass


def public(record: DelegationRecord) -> dict[str, Any]:
    return {
        "delegation_id": record["delegation_id"],
        "from_agent": record["from_agent"],
        "to_agent": record["to_agent"],
        "scope": list(record["scope"]),
        "created_at": clock.rfc3339(record["created_at"]),
        "expires_at": clock.rfc3339(record["expires_at"]),
        "revoked_at": clock.rfc3339(record["revoked_at"]),
    }


def _target(record: DelegationRecord) -> dict[str, Any]:
    return {
        "kind": "delegation",
        "delegation_id": record["delegation_id"],
        "agent_id": record["to_agent"],
        "from_agent": record["from_agent"],
    }


def grant(body: Grant, principal: Principal) -> dict[str, Any]:
    grantor_id = principal.subject(None)
    if body.to_agent == grantor_id:
        raise errors.InvalidRequest("to_agent: an agent cannot delegate to itself")
    if len(set(body.scope)) != len(body.scope) or any(route not in DELEGABLE_ROUTES for route in body.scope):
        raise errors.InvalidRequest("scope: a list of distinct delegable routes: " + ", ".join(DELEGABLE_ROUTES))
    if not ids.is_agent_id(body.to_agent):
        raise errors.NotFound()
    grantor_path, grantee_path = records.agent_path(grantor_id), records.agent_path(body.to_agent)

    def work(c: change.Change) -> DelegationRecord:
        grantor: AgentRecord = c[grantor_path]  # the caller: its credential's standing was confirmed
        grantee: AgentRecord | None = c[grantee_path]
        if grantee is None or grantee["tenant_id"] != grantor["tenant_id"]:
            raise errors.NotFound()  # another tenant's agent does not exist for the caller
        longest = c.settings["delegation_max_ttl_seconds"]
        if not MIN_TTL_SECONDS <= body.ttl_seconds <= longest:
            raise errors.InvalidRequest(f"ttl_seconds: must be between {MIN_TTL_SECONDS} and {longest}")
        expires_at = clock.after(body.ttl_seconds)
        delegation_id = read_ahead.new_delegation_id(grantor_id, body.to_agent, body.scope, expires_at)
        record: DelegationRecord = {
            "delegation_id": delegation_id,
            "from_agent": grantor_id,
            "to_agent": body.to_agent,
            "tenant_id": grantor["tenant_id"],
            "scope": list(body.scope),
            "created_at": c.now,
            "expires_at": expires_at,
            "revoked_at": None,
        }
        c.create(records.delegation_path(delegation_id), record)
        c.record("delegation.grant", {**_target(record), "scope": list(body.scope)})
        return record

    answer = public(change.apply(principal, [grantor_path, grantee_path], work))
    del answer["revoked_at"]
    return answer


def revoke(body: Revoke, principal: Principal) -> dict[str, Any]:
    if ids.grantor_of_delegation(body.delegation_id) is None:
        raise errors.NotFound()
    path = records.delegation_path(body.delegation_id)

    def work(c: change.Change) -> DelegationRecord:
        record: DelegationRecord | None = c[path]
        parties = (record["from_agent"], record["to_agent"]) if record else ()
        if record is None or not (principal.is_bridge or principal.subject(None) in parties):
            raise errors.NotFound()  # a delegation the caller is no party to does not exist for it
        if record["revoked_at"] is not None:
            return record
        record["revoked_at"] = c.now
        c.set(path, record)
        c.record("delegation.revoke", _target(record))
        return record

    record = change.apply(principal, [path], work)
    return {"delegation_id": body.delegation_id, "revoked_at": clock.rfc3339(record["revoked_at"])}


def list_for(principal: Principal) -> dict[str, Any]:
    agent_id = principal.subject(None)
    granted = store.query(records.DELEGATIONS, equals={"from_agent": agent_id}, limit=LIST_LIMIT)
    received = store.query(records.DELEGATIONS, equals={"to_agent": agent_id}, limit=LIST_LIMIT)
    return {"granted": [public(doc) for _, doc in granted], "received": [public(doc) for _, doc in received]}
