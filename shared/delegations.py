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

from shared import agents, audit, clock, errors, ids, schema, settings, store
from shared.credentials import Principal

DELEGABLE_ROUTES = ("secrets/get", "secrets/put", "secrets/list", "secrets/delete")
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


def path(delegation_id: str) -> str:
    return f"{store.DELEGATIONS}/{delegation_id}"


def public(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "delegation_id": record["delegation_id"],
        "from_agent": record["from_agent"],
        "to_agent": record["to_agent"],
        "scope": list(record["scope"]),
        "created_at": clock.rfc3339(record["created_at"]),
        "expires_at": clock.rfc3339(record["expires_at"]),
        "revoked_at": clock.rfc3339(record.get("revoked_at")),
    }


def is_usable(record: dict[str, Any] | None, grantee_id: str, grantor_id: str) -> bool:
    """Addressed to this grantee from this grantor, neither revoked nor expired."""
    return (
        record is not None
        and record["to_agent"] == grantee_id
        and record["from_agent"] == grantor_id
        and record.get("revoked_at") is None
        and clock.now() < record["expires_at"]
    )


def grant(body: Grant, principal: Principal, request_id: str) -> dict[str, Any]:
    grantor_id = principal.subject(None)
    if body.to_agent == grantor_id:
        raise errors.InvalidRequest("to_agent: an agent cannot delegate to itself")
    if len(set(body.scope)) != len(body.scope) or any(route not in DELEGABLE_ROUTES for route in body.scope):
        raise errors.InvalidRequest("scope: a list of distinct delegable routes: " + ", ".join(DELEGABLE_ROUTES))
    if not ids.is_agent_id(body.to_agent):
        raise errors.NotFound()
    delegation_id = ids.new_delegation_id(grantor_id)

    def change(txn: store.Transaction) -> dict[str, Any]:
        grantor, grantee, settings_doc = txn.get_many(
            [agents.path(grantor_id), agents.path(body.to_agent), settings.PATH]
        )
        grantor = principal.confirm_enabled(grantor)
        if grantee is None or grantee["tenant_id"] != grantor["tenant_id"]:
            raise errors.NotFound()  # another tenant's agent does not exist for the caller
        values = settings.effective(settings_doc)
        if not MIN_TTL_SECONDS <= body.ttl_seconds <= values["delegation_max_ttl_seconds"]:
            raise errors.InvalidRequest(
                f"ttl_seconds: must be between {MIN_TTL_SECONDS} and {values['delegation_max_ttl_seconds']}"
            )
        record = {
            "delegation_id": delegation_id,
            "from_agent": grantor_id,
            "to_agent": body.to_agent,
            "tenant_id": grantor["tenant_id"],
            "scope": list(body.scope),
            "created_at": clock.now(),
            "expires_at": clock.after(body.ttl_seconds),
            "revoked_at": None,
        }
        txn.create(path(delegation_id), record)
        audit.record(
            txn,
            action="delegation.grant",
            principal=principal,
            target={
                "kind": "delegation",
                "delegation_id": delegation_id,
                "agent_id": body.to_agent,
                "from_agent": grantor_id,
                "scope": list(body.scope),
            },
            request_id=request_id,
            settings_doc=settings_doc,
        )
        return record

    answer = public(store.transact(change))
    del answer["revoked_at"]
    return answer


def revoke(body: Revoke, principal: Principal, request_id: str) -> dict[str, Any]:
    grantor_id = ids.grantor_of_delegation(body.delegation_id)
    if grantor_id is None:
        raise errors.NotFound()

    def change(txn: store.Transaction) -> dict[str, Any]:
        record, settings_doc = txn.get_many([path(body.delegation_id), settings.PATH])
        parties = (record["from_agent"], record["to_agent"]) if record else ()
        if record is None or not (principal.is_bridge or principal.subject(None) in parties):
            raise errors.NotFound()  # a delegation the caller is no party to does not exist for it
        if record.get("revoked_at") is not None:
            return record
        record["revoked_at"] = clock.now()
        txn.set(path(body.delegation_id), record)
        audit.record(
            txn,
            action="delegation.revoke",
            principal=principal,
            target={
                "kind": "delegation",
                "delegation_id": body.delegation_id,
                "agent_id": record["to_agent"],
                "from_agent": record["from_agent"],
            },
            request_id=request_id,
            settings_doc=settings_doc,
        )
        return record

    record = store.transact(change)
    return {"delegation_id": body.delegation_id, "revoked_at": clock.rfc3339(record["revoked_at"])}


def list_for(principal: Principal) -> dict[str, Any]:
    agent_id = principal.subject(None)
    granted = store.query(store.DELEGATIONS, equals={"from_agent": agent_id}, limit=LIST_LIMIT)
    received = store.query(store.DELEGATIONS, equals={"to_agent": agent_id}, limit=LIST_LIMIT)
    return {"granted": [public(doc) for _, doc in granted], "received": [public(doc) for _, doc in received]}
