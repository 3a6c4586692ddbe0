"""The register of minted capability tokens: their claims, never the tokens.

Tokens are minted offline and verified with no datastore read; recording one
is for audit, so an operator can later see which tokens were issued to whom.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from shared import change, clock, config, errors, ids, records, schema
from shared.principal import Principal
from shared.records import CapabilityRecord

_JTI = re.compile(r"[A-Za-z0-9._-]{1,128}")
_KID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_SCOPE = re.compile(r"[a-z_]+(/[a-z_]+)*( [a-z_]+(/[a-z_]+)*)*")


def _matches(pattern: re.Pattern[str], rule: str) -> AfterValidator:
    def check(value: str) -> str:
        if pattern.fullmatch(value) is None:
            raise ValueError(f"must match {rule}")
        return value

    return AfterValidator(check)


class Record(schema.Body):
    jti: Annotated[str, _matches(_JTI, "[A-Za-z0-9._-]{1,128}")]
    sub: schema.Identifier
    scope: Annotated[str, Field(max_length=1024), _matches(_SCOPE, "space-separated route names")]
    iat: Annotated[int, Field(ge=0, le=2**40)]
    exp: Annotated[int, Field(ge=0, le=2**40)]
    kid: Annotated[str, _matches(_KID, "[A-Za-z0-9._-]{1,64}")]


def record(body: Record, principal: Principal) -> dict[str, Any]:
    if body.exp <= body.iat:
        raise errors.InvalidRequest("exp: must be after iat")
    # Claims no token of this deployment could carry are refused: an unknown kid, a life over the maximum.
    known = config.capability_keys()
    if known is None or body.kid not in known:
        raise errors.InvalidRequest("kid: not a capability key of this deployment")
    longest = config.get().capability_max_ttl_seconds
    if body.exp - body.iat > longest:
        raise errors.InvalidRequest(f"exp: at most {longest} seconds after iat")
    if not ids.is_agent_id(body.sub):
        raise errors.NotFound()
    path, agent_path = records.capability_path(body.jti), records.agent_path(body.sub)

    def work(c: change.Change) -> dict[str, Any]:
        if c[agent_path] is None:
            raise errors.NotFound()
        if c[path] is not None:
            raise errors.Conflict("A token with this jti is already recorded.")
        stored: CapabilityRecord = {
            "jti": body.jti,
            "sub": body.sub,
            "scope": body.scope,
            "iat": body.iat,
            "exp": body.exp,
            "kid": body.kid,
            "recorded_at": c.now,
        }
        c.create(path, stored)
        c.record(
            "capability.record",
            {"kind": "capability", "jti": body.jti, "agent_id": body.sub, "kid": body.kid, "scope": body.scope},
        )
        return {"jti": body.jti, "recorded_at": clock.rfc3339(c.now)}

    return change.apply(principal, [path, agent_path], work)
