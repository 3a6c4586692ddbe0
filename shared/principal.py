"""The verified caller: who a request acts as, who holds the credential, and what that credential stands on.

Only ``credentials.resolve`` makes one (and ``BRIDGE`` stands for the operator's
own scripts, ``PUBLIC`` for an anonymous caller of the leak-report route, which
carries no credential and passes no credential check); every domain module reads
it. It depends on nothing but the errors and the record shapes, so any module may
import it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from shared import errors, records

Via = Literal["bridge_key", "device_key", "capability", "access_token", "client", "id_token", "none"]


@dataclass(frozen=True)
class Principal:
    """A verified caller.

    ``agent_id`` is the agent the request acts as (the grantor, when delegated);
    ``actor_id`` is the agent that holds the credential. ``agent`` is the record
    of ``agent_id`` when resolution read it. ``documents`` holds what the route
    asked to read beside the credential, by path.
    """

    kind: Literal["bridge", "agent", "user", "public"]
    via: Via
    request_id: str = ""
    agent_id: str | None = None
    actor_id: str | None = None
    tenant_id: str | None = None
    key_id: str | None = None
    agent: records.AgentRecord | None = None
    delegation_id: str | None = None
    superseded: bool = False  # a device key replaced by rotation, in its grace window
    family_id: str | None = None  # the refresh-token family an access token came from
    token_jti: str | None = None  # the access token's own ID (its revocation record is named after it)
    user_id: str | None = None  # a signed-in user (kind "user")
    user: records.UserRecord | None = None
    documents: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_bridge(self) -> bool:
        return self.kind == "bridge"

    @property
    def is_delegated(self) -> bool:
        return self.delegation_id is not None

    def for_request(self, request_id: str) -> Principal:
        return dataclasses.replace(self, request_id=request_id)

    def require_bridge(self) -> None:
        if not self.is_bridge:
            raise errors.Forbidden("Only the bridge key may do this.")

    def require_user(self) -> None:
        if self.kind != "user":
            raise errors.Forbidden("Only a signed-in user may do this.")

    def require_user_or_bridge(self) -> None:
        if self.kind not in ("user", "bridge"):
            raise errors.Forbidden("Only a signed-in user or the bridge key may do this.")

    def require_agent(self) -> None:
        if self.kind != "agent":
            raise errors.Forbidden("Only an agent credential may do this.")

    def require_full_credential(self) -> None:
        """For routes that mint or revoke credentials: the bridge key, an agent's current device key, or a user.

        A short-lived capability token must not mint a longer-lived credential, and a key replaced by
        rotation (perhaps the stolen one) keeps working through its grace window but may not mint
        keys or delegations nor revoke the key that replaced it.
        """
        if self.is_bridge or self.via == "id_token":
            return  # a signed-in user grants and revokes its own delegations
        if self.via != "device_key" or self.superseded or self.is_delegated:
            raise errors.Forbidden("This needs the bridge key or the agent's current device key.")

    def subject(self, requested_agent_id: str | None) -> str:
        """The agent a request acts on: an agent caller always acts on itself, whatever the body says."""
        if self.agent_id is not None:
            return self.agent_id
        if not self.is_bridge:
            raise errors.Forbidden("This needs a credential.")  # only the bridge key names the agent it acts on
        if requested_agent_id is None:
            raise errors.InvalidRequest("agent_id: required with the bridge key")
        return requested_agent_id

    def standing_paths(self) -> list[str]:
        """The documents the credential stands on: a write re-reads them inside its transaction."""
        if self.user_id is not None:
            return [records.user_path(self.user_id)]
        if self.is_bridge or self.actor_id is None:
            return []
        paths = [records.agent_path(self.actor_id)]
        if self.key_id is not None:
            paths.append(records.device_key_path(self.actor_id, self.key_id))
        if self.family_id is not None:
            paths.append(records.refresh_family_path(self.family_id))
        if self.token_jti is not None:
            paths.append(records.revoked_token_path(self.token_jti))
        if self.delegation_id is not None and self.agent_id is not None:
            paths += [records.delegation_path(self.delegation_id), records.agent_path(self.agent_id)]
        return paths

    def audit_actor(self) -> dict[str, Any]:
        if self.is_bridge:
            return {"kind": "bridge"}
        if self.kind == "public":
            return {"kind": "public"}
        if self.kind == "user":
            return {"kind": "user", "user_id": self.user_id}
        actor: dict[str, Any] = {"kind": "agent", "agent_id": self.actor_id}
        if self.is_delegated:
            actor["on_behalf_of"] = self.agent_id
        return actor


BRIDGE = Principal(kind="bridge", via="bridge_key")
PUBLIC = Principal(kind="public", via="none")  # anyone: the actor of a leak report, which needs no credential
