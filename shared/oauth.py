"""The OAuth 2.0 authorization server: the token, introspection and revocation endpoints.

Grants of ``/oauth/token``: ``client_credentials`` (an access token for the
client agent), the RFC 7523 ``jwt-bearer`` grant (the agent "login": an access
token and a refresh token, from an assertion signed by one of its key pairs),
and ``refresh_token`` (rotation: each refresh token is spent by its use; a spent
one presented again revokes its whole family). Each issue is one audited change:
the client's records, the settings and the single-use records are read in one
round trip, and the token's audit event lands with whatever the grant writes.

A scope beyond what the client may have at that moment is ``invalid_scope``,
never narrowed in silence; without ``scope`` a token carries all it may have.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import Field

from shared import (
    access_tokens,
    change,
    clients,
    clock,
    config,
    credentials,
    dpop,
    errors,
    ids,
    keys,
    records,
    schema,
    store,
)
from shared.principal import Principal
from shared.records import AgentRecord, DeviceKeyRecord, RefreshFamilyRecord

T = TypeVar("T")
TOKEN_PATH = "/oauth/token"  # noqa: S105 - a path, not a secret
CLIENT_CREDENTIALS = "client_credentials"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
REFRESH_TOKEN = "refresh_token"  # noqa: S105 - a grant type, not a secret
GRANTS = (CLIENT_CREDENTIALS, JWT_BEARER, REFRESH_TOKEN)
SPENT_KEPT = 100  # spent refresh tokens remembered per family, for reuse detection
_Param = Field(default=None, max_length=8192)


class ClientForm(schema.Form):
    client_id: str | None = _Param
    client_secret: str | None = _Param
    client_assertion_type: str | None = _Param
    client_assertion: str | None = _Param


class TokenForm(ClientForm):
    grant_type: str | None = _Param
    scope: str | None = _Param
    resource: str | None = _Param
    refresh_token: str | None = _Param
    assertion: str | None = _Param


class IntrospectForm(ClientForm):
    token: str | None = _Param
    token_type_hint: str | None = _Param


class RevokeForm(IntrospectForm):
    pass


# ---------------------------------------------------------------- small rules


def _requested_scopes(scope: str | None) -> list[str] | None:
    if scope is None:
        return None
    listed = [s for s in scope.split(" ") if s]
    if len(listed) > schema.MAX_SCOPES or any(schema.SCOPE.fullmatch(s) is None for s in listed):
        raise errors.InvalidScope("scope: space-separated scope strings of [A-Za-z0-9:._/-]{1,64}")
    return list(dict.fromkeys(listed))


def _granted(requested: list[str] | None, allowed: Sequence[str]) -> list[str]:
    """The scopes of a new token: all it may have, or exactly what was asked if it may have all of it."""
    if requested is None:
        return list(allowed)
    if not set(requested) <= set(allowed):
        raise errors.InvalidScope()
    return requested


def _audience(resource: str | None, issuer: str) -> str:
    if resource is None:
        return issuer
    if not config.is_audience_url(resource):
        raise errors.InvalidTarget("resource: an absolute https URI, or http on a loopback host")
    return resource


def _dpop_proof(headers: Mapping[str, Sequence[str]], issuer: str) -> dpop.Proof | None:
    sent = list(headers.get("dpop", []))
    if not sent:
        return None
    if len(sent) != 1:
        raise errors.InvalidDpopProof()
    try:
        return dpop.verify(sent[0].strip(), method="POST", url=issuer + TOKEN_PATH, now=time.time())
    except errors.TokenRefused:
        raise errors.InvalidDpopProof() from None


def _spent(kind: str, expire_seconds: int) -> records.SpentAssertionRecord:
    return {"kind": kind, "expire_at": clock.after(expire_seconds)}  # type: ignore[typeddict-item]


def _spend_proof(c: change.Change, proof: dpop.Proof | None) -> None:
    if proof is not None:
        c.create(records.spent_assertion_path(proof.replay_id()), _spent("dpop_proof", 2 * dpop.SKEW_SECONDS))


def _spend_assertion(c: change.Change, assertion: clients.Assertion | None) -> None:
    """Record a client assertion's ``jti`` as used, for as long as any assertion could still be accepted."""
    if assertion is not None:
        c.create(assertion.spent_path(), _spent("client_assertion", 2 * clients.MAX_ASSERTION_LIFE_SECONDS))


def _proof_reads(proof: dpop.Proof | None) -> list[str]:
    return [records.spent_assertion_path(proof.replay_id())] if proof is not None else []


def _refuse_replayed_proof(c: change.Change, proof: dpop.Proof | None) -> None:
    if proof is not None and c[records.spent_assertion_path(proof.replay_id())] is not None:
        raise errors.InvalidDpopProof()


def _client_principal(agent_id: str, key_id: str | None, request_id: str) -> Principal:
    """The client as the actor of the token's audit event; its agent and key are re-read with the change."""
    return Principal(
        kind="agent", via="client", request_id=request_id, agent_id=agent_id, actor_id=agent_id, key_id=key_id
    )


def _as(failure: Callable[[], errors.ApiError], run: Callable[[], T]) -> T:
    """Run a change whose credential check (an agent disabled, a key revoked) must answer ``failure``."""
    try:
        return run()
    except errors.Unauthenticated:
        raise failure() from None


def _answer(claims: Mapping[str, Any], refresh_token: str | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "access_token": config.token_signing_keys().sign(claims),
        "token_type": "DPoP" if "cnf" in claims else "Bearer",
        "expires_in": claims["exp"] - claims["iat"],
        "scope": claims["scope"],
    }
    if refresh_token is not None:
        answer["refresh_token"] = refresh_token
    return answer


def _token_target(claims: Mapping[str, Any], grant_type: str) -> dict[str, Any]:
    target = {
        "kind": "access_token",
        "agent_id": claims["client_id"],
        "grant_type": grant_type,
        "jti": claims["jti"],
        "scope": claims["scope"],
        "aud": claims["aud"],
    }
    if "family_id" in claims:
        target["family_id"] = claims["family_id"]
    return target


# ---------------------------------------------------------------- /oauth/token


def token(request: credentials.Request, form: TokenForm) -> dict[str, Any]:
    if form.grant_type is None:
        raise errors.InvalidRequest("grant_type: required")
    if form.grant_type not in GRANTS:
        raise errors.UnsupportedGrantType()
    issuer = config.issuer()
    proof = _dpop_proof(request.headers, issuer)
    requested = _requested_scopes(form.scope)
    audience = _audience(form.resource, issuer)
    if form.grant_type == CLIENT_CREDENTIALS:
        return _client_credentials(request, form, proof, requested, audience, issuer)
    if form.grant_type == JWT_BEARER:
        return _jwt_bearer(request, form, proof, requested, audience, issuer)
    return _refresh(request, form, proof, requested, issuer)


def _client_credentials(
    request: credentials.Request,
    form: TokenForm,
    proof: dpop.Proof | None,
    requested: list[str] | None,
    audience: str,
    issuer: str,
) -> dict[str, Any]:
    presented = clients.presented(request.headers, form.model_dump())
    principal = _client_principal(presented.client_id, presented.key_id, request.request_id)
    now = time.time()

    def work(c: change.Change) -> dict[str, Any]:
        client = clients.authenticate(presented, c, audiences=(issuer + TOKEN_PATH, issuer), now=now)
        if client.key is None:
            raise errors.UnauthorizedClient("A public client may use only the device-code and refresh grants.")
        _refuse_replayed_proof(c, proof)
        scopes = _granted(requested, credentials.effective_scopes(client.agent, client.key))
        claims = access_tokens.new_claims(
            issuer=issuer,
            sub=client.agent_id,
            aud=audience,
            client_id=client.agent_id,
            scopes=scopes,
            tenant_id=client.agent["tenant_id"],
            key_id=client.key["key_id"],
            iat=int(c.now.timestamp()),
            ttl_seconds=c.settings["access_token_ttl_seconds"],
            jkt=proof.jkt if proof else None,
        )
        if presented.assertion is not None:
            c.create(
                presented.assertion.spent_path(), _spent("client_assertion", 2 * clients.MAX_ASSERTION_LIFE_SECONDS)
            )
        _spend_proof(c, proof)
        c.record("token.issue", _token_target(claims, CLIENT_CREDENTIALS))
        return claims

    reads = [*presented.paths(), *_proof_reads(proof)]
    return _answer(_as(presented.failure, lambda: change.apply(principal, reads, work)))


def _jwt_bearer(
    request: credentials.Request,
    form: TokenForm,
    proof: dpop.Proof | None,
    requested: list[str] | None,
    audience: str,
    issuer: str,
) -> dict[str, Any]:
    if form.assertion is None:
        raise errors.InvalidRequest("assertion: required")
    if form.client_secret is not None or form.client_assertion is not None or "authorization" in request.headers:
        raise errors.InvalidRequest("The jwt-bearer grant takes no other client authentication.")
    assertion = clients.parse_assertion(form.assertion, errors.InvalidGrant())
    if form.client_id is not None and form.client_id != assertion.agent_id:
        raise errors.InvalidGrant()
    principal = _client_principal(assertion.agent_id, assertion.key_id, request.request_id)
    agent_path = records.agent_path(assertion.agent_id)
    key_path = records.device_key_path(assertion.agent_id, assertion.key_id)
    now = time.time()

    def work(c: change.Change) -> tuple[dict[str, Any], str]:
        agent: AgentRecord = c[agent_path]  # the credential's standing (enabled, key live) was confirmed
        key: DeviceKeyRecord = c[key_path]
        if c[assertion.spent_path()] is not None:
            raise errors.InvalidGrant()
        if not clients.verify_assertion(assertion, key, audiences=(issuer + TOKEN_PATH, issuer), now=now):
            raise errors.InvalidGrant()
        _refuse_replayed_proof(c, proof)
        scopes = _granted(requested, credentials.effective_scopes(agent, key))
        family_id = ids.new_family_id(assertion.key_id)
        refresh_token = keys.new_refresh_token(family_id)
        refresh_ends = c.now + timedelta(seconds=c.settings["refresh_token_ttl_seconds"])
        family: RefreshFamilyRecord = {
            "family_id": family_id,
            "client_id": assertion.agent_id,
            "sub": assertion.agent_id,
            "tenant_id": agent["tenant_id"],
            "key_id": assertion.key_id,
            "scopes": scopes,
            "aud": audience,
            "created_at": c.now,
            "current_hash": keys.hash_key(refresh_token),
            "current_expires_at": refresh_ends,
            "spent_hashes": [],
            "revoked_at": None,
            "jkt": proof.jkt if proof else None,
            "expire_at": refresh_ends,
        }
        claims = access_tokens.new_claims(
            issuer=issuer,
            sub=assertion.agent_id,
            aud=audience,
            client_id=assertion.agent_id,
            scopes=scopes,
            tenant_id=agent["tenant_id"],
            key_id=assertion.key_id,
            iat=int(c.now.timestamp()),
            ttl_seconds=c.settings["access_token_ttl_seconds"],
            family_id=family_id,
            jkt=family["jkt"],
        )
        c.create(records.refresh_family_path(family_id), family)
        _spend_assertion(c, assertion)
        _spend_proof(c, proof)
        c.record("token.issue", _token_target(claims, JWT_BEARER))
        return claims, refresh_token

    claims, refresh_token = _as(
        errors.InvalidGrant,
        lambda: change.apply(principal, [agent_path, key_path, assertion.spent_path(), *_proof_reads(proof)], work),
    )
    return _answer(claims, refresh_token)


_REUSED = "reused"


def _refresh(
    request: credentials.Request,
    form: TokenForm,
    proof: dpop.Proof | None,
    requested: list[str] | None,
    issuer: str,
) -> dict[str, Any]:
    presented_token = form.refresh_token
    if presented_token is None:
        raise errors.InvalidRequest("refresh_token: required")
    presented = clients.presented(request.headers, form.model_dump())
    family_id = keys.family_of_refresh_token(presented_token)
    family_key = ids.key_of_family(family_id) if family_id is not None else None
    family_agent = ids.agent_of_device_key(family_key) if family_key is not None else None
    if family_id is None or family_key is None or family_agent is None:
        raise errors.InvalidGrant()
    principal = _client_principal(presented.client_id, presented.key_id, request.request_id)
    family_path = records.refresh_family_path(family_id)
    key_path = records.device_key_path(family_agent, family_key)
    presented_hash = keys.hash_key(presented_token)
    now = time.time()

    def work(c: change.Change) -> tuple[dict[str, Any], str] | str:
        client = clients.authenticate(presented, c, audiences=(issuer + TOKEN_PATH, issuer), now=now)
        family: RefreshFamilyRecord | None = c[family_path]
        key: DeviceKeyRecord | None = c[key_path]
        if family is None or family["revoked_at"] is not None or family["client_id"] != client.agent_id:
            raise errors.InvalidGrant()
        if presented_hash != family["current_hash"]:
            if presented_hash not in family["spent_hashes"]:
                raise errors.InvalidGrant()
            family["revoked_at"] = c.now  # a spent token used again: the family is compromised
            c.set(family_path, family)
            c.record(
                "token.reuse_detected",
                {"kind": "refresh_family", "agent_id": family["client_id"], "family_id": family_id},
            )
            return _REUSED
        if key is None or not credentials.key_is_live(key) or c.now >= family["current_expires_at"]:
            raise errors.InvalidGrant()
        if family["jkt"] is not None and (proof is None or proof.jkt != family["jkt"]):
            raise errors.InvalidGrant("This refresh token is bound to a DPoP key: prove possession of it.")
        _refuse_replayed_proof(c, proof)
        allowed = [s for s in credentials.effective_scopes(client.agent, key) if s in family["scopes"]]
        scopes = _granted(requested, allowed)
        refresh_token = keys.new_refresh_token(family_id)
        refresh_ends = c.now + timedelta(seconds=c.settings["refresh_token_ttl_seconds"])
        family["spent_hashes"] = [*family["spent_hashes"], family["current_hash"]][-SPENT_KEPT:]
        family["current_hash"] = keys.hash_key(refresh_token)
        family["current_expires_at"] = refresh_ends
        family["expire_at"] = refresh_ends
        claims = access_tokens.new_claims(
            issuer=issuer,
            sub=family["sub"],
            aud=family["aud"],
            client_id=client.agent_id,
            scopes=scopes,
            tenant_id=family["tenant_id"],
            key_id=family["key_id"],
            iat=int(c.now.timestamp()),
            ttl_seconds=c.settings["access_token_ttl_seconds"],
            family_id=family_id,
            jkt=family["jkt"],
        )
        c.set(family_path, family)
        if presented.assertion is not None:
            c.create(
                presented.assertion.spent_path(), _spent("client_assertion", 2 * clients.MAX_ASSERTION_LIFE_SECONDS)
            )
        _spend_proof(c, proof)
        c.record("token.refresh", _token_target(claims, REFRESH_TOKEN))
        return claims, refresh_token

    reads = [*presented.paths(), family_path, key_path, *_proof_reads(proof)]
    result = _as(presented.failure, lambda: change.apply(principal, reads, work))
    if result == _REUSED:
        raise errors.InvalidGrant()
    assert not isinstance(result, str)
    return _answer(*result)


# ---------------------------------------------------------------- introspection and revocation


class _Held:
    """A token presented for introspection or revocation, parsed without I/O (None parts: not ours)."""

    def __init__(self, text: str, issuer: str, now: float) -> None:
        self.access: access_tokens.AccessToken | None = None
        self.family_id = keys.family_of_refresh_token(text) if text.startswith(keys.REFRESH_PREFIX + "_") else None
        self.refresh_hash = keys.hash_key(text) if self.family_id is not None else None
        if self.family_id is None:
            try:
                self.access = access_tokens.verify(text, config.token_signing_keys(), issuer=issuer, now=now)
            except errors.TokenRefused:
                self.access = None  # invalid, expired or not ours: inactive, and nothing to revoke

    def paths(self) -> list[str]:
        if self.access is not None:
            return credentials.access_token_paths(self.access)
        if self.family_id is not None:
            key_id = ids.key_of_family(self.family_id) or ""
            agent_id = ids.agent_of_device_key(key_id) or ""
            return [
                records.refresh_family_path(self.family_id),
                records.agent_path(agent_id),
                records.device_key_path(agent_id, key_id),
            ]
        return []

    def introspection(self, documents: Mapping[str, Any], caller_tenant: str | None) -> dict[str, Any]:
        """RFC 7662: ``active`` and the token's claims while everything it stands on stands."""
        access = self.access
        if (
            access is not None
            and credentials.access_token_stands(access, documents)
            and caller_tenant in (None, access.tenant_id)
        ):
            return {"active": True, **access.claims(), "token_type": "DPoP" if access.jkt else "Bearer"}
        family = self._live_family(documents)
        if family is not None and (caller_tenant is None or caller_tenant == family["tenant_id"]):
            return {
                "active": True,
                "client_id": family["client_id"],
                "sub": family["sub"],
                "scope": " ".join(family["scopes"]),
                "exp": int(family["current_expires_at"].timestamp()),
                "iss": config.issuer(),
                "tenant_id": family["tenant_id"],
                "token_type": "refresh_token",
            }
        return {"active": False}

    def _live_family(self, documents: Mapping[str, Any]) -> RefreshFamilyRecord | None:
        if self.family_id is None:
            return None
        family_path, agent_path, key_path = self.paths()
        family: RefreshFamilyRecord | None = documents[family_path]
        agent: AgentRecord | None = documents[agent_path]
        key: DeviceKeyRecord | None = documents[key_path]
        if (
            family is None
            or family["revoked_at"] is not None
            or family["current_hash"] != self.refresh_hash
            or clock.now() >= family["current_expires_at"]
            or agent is None
            or agent["disabled"]
            or key is None
            or not credentials.key_is_live(key)
        ):
            return None
        return family


def introspect(request: credentials.Request, form: IntrospectForm) -> dict[str, Any]:
    """RFC 7662, for an authenticated caller: an agent as an OAuth client, or the bridge key header."""
    if form.token is None:
        raise errors.InvalidRequest("token: required")
    issuer = config.issuer()
    presented: clients.Presented | None = None
    if credentials.BRIDGE_HEADER in request.headers:
        credentials.check_bridge_key(request.headers)
    else:
        presented = clients.presented(request.headers, form.model_dump())
    now = time.time()
    held = _Held(form.token, issuer, now)
    paths = list(dict.fromkeys([*(presented.paths() if presented else []), *held.paths()]))
    documents = dict(zip(paths, store.get_many(paths), strict=True))  # one round trip
    caller_tenant = None
    if presented is not None:
        client = clients.authenticate(
            presented, documents, audiences=(issuer + TOKEN_PATH, issuer + "/oauth/introspect", issuer), now=now
        )
        if presented.assertion is not None and not store.create_once(
            presented.assertion.spent_path(), _spent("client_assertion", 2 * clients.MAX_ASSERTION_LIFE_SECONDS)
        ):
            raise presented.failure()  # the same assertion, used twice at once
        if client.key is None:  # a public agent proves nothing: introspection takes an authenticated caller
            raise presented.failure()
        caller_tenant = client.agent["tenant_id"]
    return held.introspection(documents, caller_tenant)


def revoke(request: credentials.Request, form: RevokeForm) -> dict[str, Any]:
    """RFC 7009: ``200`` for any token, unknown and invalid ones too; a token of another client is refused."""
    if form.token is None:
        raise errors.InvalidRequest("token: required")
    issuer = config.issuer()
    presented = clients.presented(request.headers, form.model_dump())
    now = time.time()
    held = _Held(form.token, issuer, now)
    principal = _client_principal(presented.client_id, presented.key_id, request.request_id)

    def work(c: change.Change) -> None:
        client = clients.authenticate(
            presented, c, audiences=(issuer + TOKEN_PATH, issuer + "/oauth/revoke", issuer), now=now
        )
        _spend_assertion(c, presented.assertion)
        if held.family_id is not None:
            family_path = records.refresh_family_path(held.family_id)
            family: RefreshFamilyRecord | None = c[family_path]
            if family is None:
                return
            if family["client_id"] != client.agent_id:
                raise errors.UnauthorizedClient("The token was issued to another client.")
            if family["revoked_at"] is None:
                family["revoked_at"] = c.now
                c.set(family_path, family)
                c.record(
                    "token.revoke", {"kind": "refresh_family", "agent_id": client.agent_id, "family_id": held.family_id}
                )
        elif held.access is not None:
            if held.access.client_id != client.agent_id:
                raise errors.UnauthorizedClient("The token was issued to another client.")
            revoked_path = records.revoked_token_path(held.access.jti)
            if c[revoked_path] is None:
                revoked: records.RevokedTokenRecord = {
                    "jti": held.access.jti,
                    "client_id": client.agent_id,
                    "revoked_at": c.now,
                    "expire_at": clock.after(max(0, int(held.access.exp - now)) + access_tokens.SKEW_SECONDS),
                }
                c.create(revoked_path, revoked)
                c.record("token.revoke", {"kind": "access_token", "agent_id": client.agent_id, "jti": held.access.jti})

    reads = list(dict.fromkeys([*presented.paths(), *held.paths()]))
    _as(presented.failure, lambda: change.apply(principal, reads, work))
    return {}


# ---------------------------------------------------------------- discovery


def jwks() -> dict[str, Any]:
    """The public keys that sign access tokens (RFC 7517), for ``/.well-known/jwks.json``."""
    return config.token_signing_keys().jwks()


def metadata() -> dict[str, Any]:
    """RFC 8414 authorization-server metadata."""
    issuer = config.issuer()
    methods = list(clients.METHODS)
    return {
        "issuer": issuer,
        "token_endpoint": issuer + TOKEN_PATH,
        "jwks_uri": issuer + "/.well-known/jwks.json",
        "introspection_endpoint": issuer + "/oauth/introspect",
        "revocation_endpoint": issuer + "/oauth/revoke",
        "grant_types_supported": list(GRANTS),
        "response_types_supported": [],  # no authorization endpoint: no redirect flows
        "token_endpoint_auth_methods_supported": methods,
        "token_endpoint_auth_signing_alg_values_supported": ["EdDSA"],
        "introspection_endpoint_auth_methods_supported": methods,
        "revocation_endpoint_auth_methods_supported": [*methods, "none"],
        "dpop_signing_alg_values_supported": ["EdDSA"],
        "scopes_supported": [],
    }
