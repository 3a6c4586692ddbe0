"""Agents: who they are, which tenant holds them, whether they are suspended.

An agent record also keeps ``active_keys`` (key ID -> expiry) so the
per-agent key limit is checked inside the issuing transaction without a query.
"""

from __future__ import annotations

from typing import Any

from shared import audit, clock, errors, ids, schema, settings, store
from shared.credentials import Principal

DEFAULT_TENANT = "default"


class CreateAgent(schema.Body):
    display_name: schema.DisplayName
    tenant_id: schema.TenantId = DEFAULT_TENANT


class GetAgent(schema.Body):
    agent_id: schema.Identifier | None = None


class ListAgents(schema.Body):
    tenant_id: schema.TenantId | None = None
    page_size: schema.PageSize = 50
    page_token: schema.PageToken | None = None


class UpdateAgent(schema.Body):
    agent_id: schema.Identifier
    display_name: schema.DisplayName | None = None
    disabled: bool | None = None


def path(agent_id: str) -> str:
    return f"{store.AGENTS}/{agent_id}"


def public(agent: dict[str, Any]) -> dict[str, Any]:
    return {
        "agent_id": agent["agent_id"],
        "display_name": agent["display_name"],
        "tenant_id": agent["tenant_id"],
        "created_at": clock.rfc3339(agent["created_at"]),
        "disabled": agent["disabled"],
    }


def create(body: CreateAgent, principal: Principal, request_id: str) -> dict[str, Any]:
    agent_id = ids.new_agent_id()
    agent = {
        "agent_id": agent_id,
        "display_name": body.display_name,
        "tenant_id": body.tenant_id,
        "created_at": clock.now(),
        "disabled": False,
        "active_keys": {},
    }

    def change(txn: store.Transaction) -> None:
        (settings_doc,) = txn.get_many([settings.PATH])
        txn.create(path(agent_id), agent)
        audit.record(
            txn,
            action="agent.create",
            principal=principal,
            target={"kind": "agent", "agent_id": agent_id, "tenant_id": body.tenant_id},
            request_id=request_id,
            settings_doc=settings_doc,
        )

    store.transact(change)
    return public(agent)


def get(agent_id: str, principal: Principal) -> dict[str, Any]:
    if principal.agent is not None and principal.agent_id == agent_id:
        return public(principal.agent)  # read while resolving the credential: no second round trip
    if not ids.is_agent_id(agent_id):
        raise errors.NotFound()
    (agent,) = store.get_many([path(agent_id)])
    if principal.via == "capability" and (agent is None or agent["disabled"]):
        raise errors.Unauthenticated()  # the record is read anyway, so a suspended agent's token stops here
    if agent is None:
        raise errors.NotFound()
    return public(agent)


def list_agents(body: ListAgents) -> dict[str, Any]:
    if body.page_token is not None and not ids.is_agent_id(body.page_token):
        raise errors.InvalidRequest("page_token: not a token from a previous page")
    rows = store.query(
        store.AGENTS,
        equals={"tenant_id": body.tenant_id} if body.tenant_id is not None else None,
        after_id=body.page_token,
        limit=body.page_size + 1,
    )
    page = rows[: body.page_size]
    more = len(rows) > body.page_size
    return {"agents": [public(doc) for _, doc in page], "next_page_token": page[-1][0] if more else None}


def update(body: UpdateAgent, principal: Principal, request_id: str) -> dict[str, Any]:
    if not ids.is_agent_id(body.agent_id):
        raise errors.NotFound()

    def change(txn: store.Transaction) -> dict[str, Any]:
        agent, settings_doc = txn.get_many([path(body.agent_id), settings.PATH])
        if agent is None:
            raise errors.NotFound()
        changes: dict[str, Any] = {}
        if body.display_name is not None and body.display_name != agent["display_name"]:
            changes["display_name"] = body.display_name
        if body.disabled is not None and body.disabled != agent["disabled"]:
            changes["disabled"] = body.disabled
        if not changes:
            return agent  # nothing changed, so nothing to audit
        agent.update(changes)
        txn.set(path(body.agent_id), agent)
        audit.record(
            txn,
            action="agent.update",
            principal=principal,
            target={"kind": "agent", "agent_id": body.agent_id, "changes": sorted(changes)},
            request_id=request_id,
            settings_doc=settings_doc,
        )
        return agent

    return public(store.transact(change))
