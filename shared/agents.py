"""Agents: who they are, which tenant holds them, whether they are suspended.

An agent record also keeps ``active_keys`` (key ID -> expiry) so the
per-agent key limit is checked inside the issuing transaction without a query.
"""

from __future__ import annotations

from typing import Any

from shared import change, clock, errors, ids, records, schema, store
from shared.principal import Principal
from shared.records import AgentRecord

DEFAULT_TENANT = "default"


class CreateAgent(schema.Body):
    display_name: schema.DisplayName
    tenant_id: schema.TenantId = DEFAULT_TENANT
    scopes: schema.Scopes | None = None
    public: bool | None = None


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
    scopes: schema.Scopes | None = None
    public: bool | None = None


def public(agent: AgentRecord) -> dict[str, Any]:
    return {
        "agent_id": agent["agent_id"],
        "display_name": agent["display_name"],
        "tenant_id": agent["tenant_id"],
        "created_at": clock.rfc3339(agent["created_at"]),
        "disabled": agent["disabled"],
        "scopes": scopes_of(agent),
        "public": agent.get("public", False),
    }


def scopes_of(agent: AgentRecord) -> list[str]:
    """The most the agent's OAuth tokens may carry."""
    return list(agent.get("scopes", []))


def create(body: CreateAgent, principal: Principal) -> dict[str, Any]:
    agent_id = ids.new_agent_id()
    path = records.agent_path(agent_id)

    def work(c: change.Change) -> AgentRecord:
        agent: AgentRecord = {
            "agent_id": agent_id,
            "display_name": body.display_name,
            "tenant_id": body.tenant_id,
            "created_at": c.now,
            "disabled": False,
            "active_keys": {},
            "scopes": list(body.scopes or []),
            "public": bool(body.public),
        }
        c.create(path, agent)
        c.record("agent.create", {"kind": "agent", "agent_id": agent_id, "tenant_id": body.tenant_id})
        return agent

    return public(change.apply(principal, [], work))


def get(agent_id: str, principal: Principal) -> dict[str, Any]:
    if principal.agent is not None and principal.agent_id == agent_id:
        return public(principal.agent)  # read while resolving the credential: no second round trip
    if not ids.is_agent_id(agent_id):
        raise errors.NotFound()
    agent: AgentRecord | None = store.get_many([records.agent_path(agent_id)])[0]
    if principal.via == "capability" and (agent is None or agent["disabled"]):
        raise errors.Unauthenticated()  # the record is read anyway, so a suspended agent's token stops here
    if agent is None:
        raise errors.NotFound()
    return public(agent)


def list_agents(body: ListAgents) -> dict[str, Any]:
    if body.page_token is not None and not ids.is_agent_id(body.page_token):
        raise errors.InvalidRequest("page_token: not a token from a previous page")
    agents, next_token = store.tenant_page(
        records.AGENTS, tenant_id=body.tenant_id, after_id=body.page_token, page_size=body.page_size
    )
    return {"agents": [public(agent) for agent in agents], "next_page_token": next_token}


def update(body: UpdateAgent, principal: Principal) -> dict[str, Any]:
    if not ids.is_agent_id(body.agent_id):
        raise errors.NotFound()
    path = records.agent_path(body.agent_id)

    def work(c: change.Change) -> AgentRecord:
        agent: AgentRecord | None = c[path]
        if agent is None:
            raise errors.NotFound()
        changed = []
        if body.display_name is not None and body.display_name != agent["display_name"]:
            agent["display_name"] = body.display_name
            changed.append("display_name")
        if body.disabled is not None and body.disabled != agent["disabled"]:
            agent["disabled"] = body.disabled
            changed.append("disabled")
        if body.scopes is not None and body.scopes != scopes_of(agent):
            agent["scopes"] = list(body.scopes)
            changed.append("scopes")
        if body.public is not None and body.public != agent.get("public", False):
            if body.public and any(v is None or c.now < v for v in agent["active_keys"].values()):
                raise errors.Conflict("An agent with live keys cannot become public: revoke its keys first.")
            agent["public"] = body.public
            changed.append("public")
        if changed:  # nothing changed, nothing to write or audit
            c.set(path, agent)
            c.record("agent.update", {"kind": "agent", "agent_id": body.agent_id, "changes": sorted(changed)})
        return agent

    return public(change.apply(principal, [path], work))
