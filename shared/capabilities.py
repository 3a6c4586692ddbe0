"""The register of minted capability tokens: their claims, never the tokens.

Tokens are minted offline and verified with no datastore read; recording one
is for audit, so an operator can later see which tokens were issued to whom.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from shared import agents, audit, clock, errors, ids, schema, settings, store
from shared.credentials import Principal

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


def record(body: Record, principal: Principal, request_id: str) -> dict[str, Any]:
    if body.exp <= body.iat:
        raise errors.InvalidRequest("exp: must be after iat")
    if not ids.is_agent_id(body.sub):
        raise errors.NotFound()
    path = f"{store.CAPABILITY_TOKENS}/j_{body.jti}"  # the prefix keeps "." or "__x__" legal document IDs

    def change(txn: store.Transaction) -> dict[str, Any]:
        existing, agent, settings_doc = txn.get_many([path, agents.path(body.sub), settings.PATH])
        if agent is None:
            raise errors.NotFound()
        if existing is not None:
            raise errors.Conflict("A token with this jti is already recorded.")
        now = clock.now()
        txn.create(path, {**body.model_dump(), "recorded_at": now})
        audit.record(
            txn,
            action="capability.record",
            principal=principal,
            target={"kind": "capability", "jti": body.jti, "agent_id": body.sub, "kid": body.kid, "scope": body.scope},
            request_id=request_id,
            settings_doc=settings_doc,
        )
        return {"jti": body.jti, "recorded_at": clock.rfc3339(now)}

    return store.transact(change)
