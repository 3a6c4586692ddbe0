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

import hmac
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, TypeVar

from shared import (
    access_tokens,
    change,
    clients,
    clock,
    config,
    credentials,
    device_flow,
    dpop,
    errors,
    ids,
    keys,
    records,
    schema,
    store,
)
from shared.records import AgentRecord, DeviceKeyRecord, RefreshFamilyRecord, UserGrantRecord, UserRecord

T = TypeVar("T")

TOKEN_PATH = "/oauth/token"
CLIENT_CREDENTIALS = "client_credentials"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
REFRESH_TOKEN = "refresh_token"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
GRANTS = (CLIENT_CREDENTIALS, JWT_BEARER, REFRESH_TOKEN, TOKEN_EXCHANGE, DEVICE_CODE)
SPENT_KEPT = 100  # spent refresh tokens remembered per family, for reuse detection
_Param = clients.PARAMETER


class TokenForm(clients.ClientForm):
    grant_type: str | None = _Param
    scope: str | None = _Param
    resource: str | None = _Param
    refresh_token: str | None = _Param
    assertion: str | None = _Param
    subject_token: str | None = _Param
    subject_token_type: str | None = _Param
    device_code: str | None = _Param


class IntrospectForm(clients.ClientForm):
    token: str | None = _Param
    token_type_hint: str | None = _Param


class RevokeForm(IntrospectForm):
    pass


# ---------------------------------------------------------------- small rules


def requested_scopes(scope: str | None) -> list[str] | None:
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


def _within(scopes: Sequence[str], allowed: Sequence[str]) -> list[str]:
    return [scope for scope in scopes if scope in allowed]


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


def _spent(kind: Literal["client_assertion", "dpop_proof"], expire_seconds: int) -> records.SpentAssertionRecord:
    return {"kind": kind, "expire_at": clock.after(expire_seconds)}


@dataclass(frozen=True)
class _Issue:
    """What every grant of one token request shares: who asks, for what audience and scopes, with which proof."""

    request: credentials.Request
    form: TokenForm
    issuer: str
    audience: str
    requested: list[str] | None
    proof: dpop.Proof | None
    now: float  # POSIX time, for assertion checks

    @property
    def audiences(self) -> tuple[str, str]:
        """What a client assertion may name as its ``aud``: the token endpoint, or the issuer."""
        return self.issuer + TOKEN_PATH, self.issuer

    @property
    def jkt(self) -> str | None:
        return self.proof.jkt if self.proof is not None else None

    def reads(self, *paths: str) -> list[str]:
        """``paths`` and the proof's spent-``jti`` record, for one round trip."""
        proof = [records.spent_assertion_path(self.proof.replay_id())] if self.proof is not None else []
        return list(dict.fromkeys([*paths, *proof]))

    def refuse_replayed_proof(self, c: change.Change) -> None:
        if self.proof is not None and c[records.spent_assertion_path(self.proof.replay_id())] is not None:
            raise errors.InvalidDpopProof()

    def spend(self, c: change.Change, assertion: clients.Assertion | None) -> None:
        """Make the client assertion and the DPoP proof single-use, in the token's own change."""
        clients.spend_assertion(c, assertion)
        if self.proof is not None:
            c.note(records.spent_assertion_path(self.proof.replay_id()), _spent("dpop_proof", 2 * dpop.SKEW_SECONDS))

    def new_family(
        self,
        c: change.Change,
        *,
        client_id: str,
        sub: str,
        tenant_id: str,
        key_id: str | None,
        scopes: list[str],
        grant_id: str | None = None,
    ) -> tuple[str, str]:
        """A new refresh-token family (a login), created in ``c``: its ID and its first refresh token."""
        family_id = ids.new_family_id(client_id, key_id)
        refresh_token = keys.new_refresh_token(family_id)
        refresh_ends = c.now + timedelta(seconds=c.settings["refresh_token_ttl_seconds"])
        record: RefreshFamilyRecord = {
            "family_id": family_id,
            "client_id": client_id,
            "sub": sub,
            "tenant_id": tenant_id,
            "key_id": key_id,
            "scopes": scopes,
            "aud": self.audience,
            "created_at": c.now,
            "current_hash": keys.hash_key(refresh_token),
            "current_expires_at": refresh_ends,
            "spent_hashes": [],
            "revoked_at": None,
            "jkt": self.jkt,
            "expire_at": refresh_ends,
        }
        if grant_id is not None:
            record["grant_id"] = grant_id
        c.create(records.refresh_family_path(family_id), record)
        return family_id, refresh_token

    def claims(
        self,
        c: change.Change,
        *,
        sub: str,
        client_id: str,
        scopes: list[str],
        tenant_id: str,
        key_id: str | None,
        aud: str | None = None,
        family_id: str | None = None,
        actor: str | None = None,
        grant_id: str | None = None,
        jkt: str | None = None,
    ) -> dict[str, Any]:
        """A new access token's claims, with the life the settings give it now."""
        return access_tokens.new_claims(
            issuer=self.issuer,
            sub=sub,
            aud=aud or self.audience,
            client_id=client_id,
            scopes=scopes,
            tenant_id=tenant_id,
            key_id=key_id,
            iat=int(c.now.timestamp()),
            ttl_seconds=c.settings["access_token_ttl_seconds"],
            family_id=family_id,
            actor=actor,
            grant_id=grant_id,
            jkt=jkt,
        )


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
    grant = _GRANTS.get(form.grant_type)
    if grant is None:
        raise errors.UnsupportedGrantType()
    issuer = config.issuer()
    issue = _Issue(
        request=request,
        form=form,
        issuer=issuer,
        audience=_audience(form.resource, issuer),
        requested=requested_scopes(form.scope),
        proof=_dpop_proof(request.headers, issuer),
        now=time.time(),
    )
    return grant(issue)


def _client_credentials(issue: _Issue) -> dict[str, Any]:
    presented = clients.presented(issue.request.headers, issue.form.model_dump())
    principal = clients.principal(presented.client_id, presented.key_id, issue.request.request_id)

    def work(c: change.Change) -> dict[str, Any]:
        client = clients.authenticate(presented, c, audiences=issue.audiences, now=issue.now)
        if client.key is None:
            raise errors.UnauthorizedClient("A public client may use only the device-code and refresh grants.")
        issue.refuse_replayed_proof(c)
        claims = issue.claims(
            c,
            sub=client.agent_id,
            client_id=client.agent_id,
            scopes=_granted(issue.requested, credentials.effective_scopes(client.agent, client.key)),
            tenant_id=client.agent["tenant_id"],
            key_id=client.key["key_id"],
            jkt=issue.jkt,
        )
        issue.spend(c, presented.assertion)
        c.record("token.issue", _token_target(claims, CLIENT_CREDENTIALS))
        return claims

    reads = issue.reads(*presented.paths())
    return _answer(change.apply(principal, reads, work, refused=presented.failure))


def _jwt_bearer(issue: _Issue) -> dict[str, Any]:
    form = issue.form
    if form.assertion is None:
        raise errors.InvalidRequest("assertion: required")
    if form.client_secret is not None or form.client_assertion is not None or "authorization" in issue.request.headers:
        raise errors.InvalidRequest("The jwt-bearer grant takes no other client authentication.")
    assertion = clients.parse_assertion(form.assertion, errors.InvalidGrant())
    if form.client_id is not None and form.client_id != assertion.agent_id:
        raise errors.InvalidGrant()
    principal = clients.principal(assertion.agent_id, assertion.key_id, issue.request.request_id)
    agent_path = records.agent_path(assertion.agent_id)
    key_path = records.device_key_path(assertion.agent_id, assertion.key_id)

    def work(c: change.Change) -> tuple[dict[str, Any], str]:
        agent: AgentRecord = c[agent_path]  # the credential's standing (enabled, key live) was confirmed
        key: DeviceKeyRecord = c[key_path]
        if c[assertion.spent_path()] is not None:
            raise errors.InvalidGrant()
        if not clients.verify_assertion(assertion, key, audiences=issue.audiences, now=issue.now):
            raise errors.InvalidGrant()
        issue.refuse_replayed_proof(c)
        scopes = _granted(issue.requested, credentials.effective_scopes(agent, key))
        family_id, refresh_token = issue.new_family(
            c, client_id=assertion.agent_id, sub=assertion.agent_id, tenant_id=agent["tenant_id"],
            key_id=assertion.key_id, scopes=scopes,
        )  # fmt: skip
        claims = issue.claims(
            c,
            sub=assertion.agent_id,
            client_id=assertion.agent_id,
            scopes=scopes,
            tenant_id=agent["tenant_id"],
            key_id=assertion.key_id,
            family_id=family_id,
            jkt=issue.jkt,
        )
        issue.spend(c, assertion)
        c.record("token.issue", _token_target(claims, JWT_BEARER))
        return claims, refresh_token

    reads = issue.reads(agent_path, key_path, assertion.spent_path())
    claims, refresh_token = change.apply(principal, reads, work, refused=errors.InvalidGrant)
    return _answer(claims, refresh_token)


_REUSED = "reused"


def _refresh(issue: _Issue) -> dict[str, Any]:
    presented_token = issue.form.refresh_token
    if presented_token is None:
        raise errors.InvalidRequest("refresh_token: required")
    presented = clients.presented(issue.request.headers, issue.form.model_dump())
    family_id = keys.family_of_refresh_token(presented_token)
    family_agent = ids.agent_of_family(family_id) if family_id is not None else None
    if family_id is None or family_agent is None:
        raise errors.InvalidGrant()
    family_key = ids.key_of_family(family_id)
    key_path = records.device_key_path(family_agent, family_key) if family_key is not None else None
    principal = clients.principal(presented.client_id, presented.key_id, issue.request.request_id)
    family_path = records.refresh_family_path(family_id)
    presented_hash = keys.hash_key(presented_token)

    def work(c: change.Change) -> tuple[dict[str, Any], str] | str:
        client = clients.authenticate(presented, c, audiences=issue.audiences, now=issue.now)
        family: RefreshFamilyRecord | None = c[family_path]
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
        key: DeviceKeyRecord | None = c[key_path] if key_path is not None else None
        if (key_path is not None and (key is None or not credentials.key_is_live(key))) or (
            c.now >= family["current_expires_at"]
        ):
            raise errors.InvalidGrant()
        if family["jkt"] is not None and issue.jkt != family["jkt"]:
            raise errors.InvalidGrant("This refresh token is bound to a DPoP key: prove possession of it.")
        issue.refuse_replayed_proof(c)
        grant_id = family.get("grant_id")
        allowed = credentials.effective_scopes(client.agent, key)
        if family["sub"] != family["client_id"]:  # the client acts for a user: while the user and grant stand
            allowed = _within(_acting_scopes(c, family["sub"], client.agent_id, grant_id, family["tenant_id"]), allowed)
        refresh_token = keys.new_refresh_token(family_id)
        refresh_ends = c.now + timedelta(seconds=c.settings["refresh_token_ttl_seconds"])
        family["spent_hashes"] = [*family["spent_hashes"], family["current_hash"]][-SPENT_KEPT:]
        family["current_hash"] = keys.hash_key(refresh_token)
        family["current_expires_at"] = refresh_ends
        family["expire_at"] = refresh_ends
        claims = issue.claims(
            c,
            sub=family["sub"],
            aud=issue.audience if issue.form.resource is not None else family["aud"],  # RFC 8707 §2.2
            client_id=client.agent_id,
            scopes=_granted(issue.requested, [s for s in allowed if s in family["scopes"]]),
            tenant_id=family["tenant_id"],
            key_id=family["key_id"],
            family_id=family_id,
            actor=client.agent_id if grant_id is not None else None,
            grant_id=grant_id,
            jkt=family["jkt"],
        )
        c.set(family_path, family)
        issue.spend(c, presented.assertion)
        c.record("token.refresh", _token_target(claims, REFRESH_TOKEN))
        return claims, refresh_token

    reads = issue.reads(*presented.paths(), family_path, *([key_path] if key_path is not None else []))
    result = _rerun_a_lost_race(lambda: change.apply(principal, reads, work, refused=presented.failure))
    if result == _REUSED:
        raise errors.InvalidGrant()
    assert not isinstance(result, str)
    return _answer(*result)


LOST_RACE_RERUNS = 2


def _rerun_a_lost_race(refresh: Callable[[], T]) -> T:
    """Run ``refresh``; if it lost a race on its family (contention outlasted the datastore deadline, as
    when one refresh token is presented several times at once), run it again. The rerun reads what the
    race left: the token still current (it may win now), spent by another presentation (a reuse: the
    family is revoked and ``token.reuse_detected`` audited, as the contract says), or the family already
    down (refused). A datastore that does not answer stays a 503."""
    for rerun in range(LOST_RACE_RERUNS + 1):
        try:
            return refresh()
        except errors.Contention:
            if rerun == LOST_RACE_RERUNS:
                raise
    raise AssertionError("unreachable")


def _acting_scopes(c: change.Change, user_id: str, agent_id: str, grant_id: str | None, tenant_id: str) -> list[str]:
    """What a client acting for a user may still carry: the actions of a live grant of an enabled user."""
    user_path = records.user_path(user_id)
    grant_path = records.user_grant_path(grant_id or "")
    c.read([user_path, grant_path])  # named by the family just read: a second read, before any write
    user: UserRecord | None = c[user_path]
    grant: UserGrantRecord | None = c[grant_path]
    if (
        user is None
        or user["disabled"]
        or user["tenant_id"] != tenant_id
        or grant is None
        or not credentials.grant_is_live(grant, user_id, agent_id)
    ):
        raise errors.InvalidGrant()
    return list(grant["actions"])


def _subject_user(form: TokenForm) -> str:
    """The user a token exchange is for: from a Firebase ID token, or a user's access token of ours."""
    refused = errors.InvalidRequest("subject_token: not a valid token of a user here")
    if form.subject_token is None or form.subject_token_type is None:
        raise errors.InvalidRequest("subject_token, subject_token_type: required")
    if form.subject_token_type == ID_TOKEN_TYPE:
        from shared import firebase

        try:
            return ids.user_id_of(firebase.verify_id_token(form.subject_token))
        except errors.TokenRefused:
            raise refused from None
    if form.subject_token_type != ACCESS_TOKEN_TYPE:
        raise errors.InvalidRequest("subject_token_type: an id_token or an access_token")
    # Every user token this service issues carries act (an agent acting for the user): exchanging one
    # would be a second hop, and an agent's own token is no user's. So no access token qualifies today;
    # the type is accepted for the day user sessions of their own exist.
    raise refused


def _token_exchange(issue: _Issue) -> dict[str, Any]:
    """RFC 8693: an agent, authenticated, trades a user's token for one to act for that user (``act``)."""
    presented = clients.presented(issue.request.headers, issue.form.model_dump())
    user_id = _subject_user(issue.form)
    principal = clients.principal(presented.client_id, presented.key_id, issue.request.request_id)
    user_path = records.user_path(user_id)
    grant_id = ids.grant_id_of(user_id, presented.client_id)
    grant_path = records.user_grant_path(grant_id)

    def work(c: change.Change) -> dict[str, Any]:
        client = clients.authenticate(presented, c, audiences=issue.audiences, now=issue.now)
        if client.key is None:
            raise errors.UnauthorizedClient("A public client may use only the device-code and refresh grants.")
        user: UserRecord | None = c[user_path]
        grant: UserGrantRecord | None = c[grant_path]
        if (
            user is None
            or user["disabled"]
            or user["tenant_id"] != client.agent["tenant_id"]
            or not credentials.grant_is_live(grant, user_id, client.agent_id)
            or grant is None
        ):
            raise errors.InvalidRequest("subject_token: not a valid token of a user here")
        issue.refuse_replayed_proof(c)
        claims = issue.claims(
            c,
            sub=user_id,
            client_id=client.agent_id,
            # What the client may have at that moment: its own scopes (narrowed by its key) and the grant's.
            scopes=_granted(
                issue.requested, _within(grant["actions"], credentials.effective_scopes(client.agent, client.key))
            ),
            tenant_id=user["tenant_id"],
            key_id=client.key["key_id"],
            actor=client.agent_id,
            grant_id=grant_id,
            jkt=issue.jkt,
        )
        issue.spend(c, presented.assertion)
        c.record("token.issue", {**_token_target(claims, TOKEN_EXCHANGE), "user_id": user_id, "grant_id": grant_id})
        return claims

    reads = issue.reads(*presented.paths(), user_path, grant_path)
    answer = _answer(change.apply(principal, reads, work, refused=presented.failure))
    return {**answer, "issued_token_type": ACCESS_TOKEN_TYPE}


_POLL_ANSWERS: dict[str, Callable[[], errors.ApiError]] = {
    "pending": errors.AuthorizationPending,
    "slow_down": errors.SlowDown,
    "denied": errors.AccessDenied,
    "expired": errors.ExpiredToken,
    "used": errors.InvalidGrant,  # a device code answers once; the tokens it gave stand
}


def _device_code(issue: _Issue) -> dict[str, Any]:
    """RFC 8628 §3.4: the polling program's tokens, once a person approved; sub = the person, act = the agent."""
    device_code = issue.form.device_code
    if device_code is None:
        raise errors.InvalidRequest("device_code: required")
    path = device_flow.device_code_path(device_code)
    if path is None:
        raise errors.InvalidGrant()
    presented = clients.presented(issue.request.headers, issue.form.model_dump())
    principal = clients.principal(presented.client_id, presented.key_id, issue.request.request_id)

    def work(c: change.Change) -> tuple[dict[str, Any], str] | str:
        client = clients.authenticate(presented, c, audiences=issue.audiences, now=issue.now)
        approved = device_flow.poll(c, device_code, client.agent_id)
        if isinstance(approved, str):
            return approved  # not yet, or never: the poll's bookkeeping still commits
        user_id = approved["user_id"] or ""
        grant_id = ids.grant_id_of(user_id, client.agent_id)
        key_id = client.key["key_id"] if client.key is not None else None
        scopes = _granted(
            issue.requested, _within(approved["scopes"], credentials.effective_scopes(client.agent, client.key))
        )
        family_id, refresh_token = issue.new_family(
            c, client_id=client.agent_id, sub=user_id, tenant_id=approved["tenant_id"], key_id=key_id,
            scopes=scopes, grant_id=grant_id,
        )  # fmt: skip
        claims = issue.claims(
            c,
            sub=user_id,
            client_id=client.agent_id,
            scopes=scopes,
            tenant_id=approved["tenant_id"],
            key_id=key_id,
            family_id=family_id,
            actor=client.agent_id,
            grant_id=grant_id,
            jkt=issue.jkt,
        )
        issue.spend(c, presented.assertion)
        c.record("token.issue", {**_token_target(claims, DEVICE_CODE), "user_id": user_id, "grant_id": grant_id})
        return claims, refresh_token

    result = change.apply(principal, issue.reads(*presented.paths(), path), work, refused=presented.failure)
    if isinstance(result, str):
        raise _POLL_ANSWERS[result]()
    return _answer(*result)


def device_authorization(request: credentials.Request, form: device_flow.AuthorizationForm) -> dict[str, Any]:
    """``/oauth/device_authorization`` (RFC 8628 §3.1)."""
    return device_flow.start(request, form, requested_scopes(form.scope))


_GRANTS: dict[str, Callable[[_Issue], dict[str, Any]]] = {
    DEVICE_CODE: _device_code,
    CLIENT_CREDENTIALS: _client_credentials,
    JWT_BEARER: _jwt_bearer,
    REFRESH_TOKEN: _refresh,
    TOKEN_EXCHANGE: _token_exchange,
}


# ---------------------------------------------------------------- introspection and revocation


class _Held:
    """A token presented for introspection or revocation, parsed without I/O (None parts: not ours)."""

    def __init__(self, text: str, issuer: str, now: float) -> None:
        self.access: access_tokens.AccessToken | None = None
        self.access_paths: credentials.TokenPaths | None = None  # what the access token stands on
        self.family_id = keys.family_of_refresh_token(text) if text.startswith(keys.REFRESH_PREFIX + "_") else None
        self.refresh_hash = keys.hash_key(text) if self.family_id is not None else None
        if self.family_id is None:
            try:
                self.access = access_tokens.verify(text, config.token_signing_keys(), issuer=issuer, now=now)
            except errors.TokenRefused:
                self.access = None  # invalid, expired or not ours: inactive, and nothing to revoke
            else:
                self.access_paths = credentials.access_token_paths(self.access)

    def paths(self) -> list[str]:
        if self.access_paths is not None:
            return self.access_paths.all()
        if self.family_id is not None:
            key_id = ids.key_of_family(self.family_id)
            agent_id = ids.agent_of_family(self.family_id) or ""
            key_path = [records.device_key_path(agent_id, key_id)] if key_id is not None else []
            return [records.refresh_family_path(self.family_id), records.agent_path(agent_id), *key_path]
        return []

    def introspection(self, documents: Mapping[str, Any], caller_tenant: str | None) -> dict[str, Any]:
        """RFC 7662: ``active`` and the token's claims while everything it stands on stands."""
        access, access_paths = self.access, self.access_paths
        if (
            access is not None
            and access_paths is not None
            and credentials.access_token_stands(access, access_paths, documents)
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
        family_path, agent_path, *key_path = self.paths()
        family: RefreshFamilyRecord | None = documents[family_path]
        agent: AgentRecord | None = documents[agent_path]
        key: DeviceKeyRecord | None = documents[key_path[0]] if key_path else None
        if (
            not refresh_token_is_current(family, self.refresh_hash)
            or agent is None
            or agent["disabled"]
            or (key_path and (key is None or not credentials.key_is_live(key)))
        ):
            return None
        return family


def refresh_token_is_current(family: RefreshFamilyRecord | None, presented_hash: str | None) -> bool:
    """Whether a refresh token (by its hash) is its family's one live token: family standing, not expired."""
    return (
        family is not None
        and presented_hash is not None
        and family["revoked_at"] is None
        and hmac.compare_digest(family["current_hash"], presented_hash)
        and clock.now() < family["current_expires_at"]
    )


def revoke_family(c: change.Change, family_id: str) -> RefreshFamilyRecord | None:
    """Inside a change that read the family: revoke it (every token of it, refresh and access, from the next
    request). The family if it was revoked now; None if absent or revoked before. The caller records the event."""
    path = records.refresh_family_path(family_id)
    family: RefreshFamilyRecord | None = c[path]
    if family is None or family["revoked_at"] is not None:
        return None
    family["revoked_at"] = c.now
    c.set(path, family)
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
    principal = clients.principal(presented.client_id, presented.key_id, request.request_id)

    def work(c: change.Change) -> None:
        client = clients.authenticate(
            presented, c, audiences=(issuer + TOKEN_PATH, issuer + "/oauth/revoke", issuer), now=now
        )
        clients.spend_assertion(c, presented.assertion)
        if held.family_id is not None:
            family_path = records.refresh_family_path(held.family_id)
            family: RefreshFamilyRecord | None = c[family_path]
            if family is None:
                return
            if family["client_id"] != client.agent_id:
                raise errors.UnauthorizedClient("The token was issued to another client.")
            if revoke_family(c, held.family_id):
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
    change.apply(principal, reads, work, refused=presented.failure)
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
        "device_authorization_endpoint": issuer + "/oauth/device_authorization",
        "grant_types_supported": list(GRANTS),
        "response_types_supported": [],  # no authorization endpoint: no redirect flows
        "token_endpoint_auth_methods_supported": methods,
        "token_endpoint_auth_signing_alg_values_supported": ["EdDSA"],
        "introspection_endpoint_auth_methods_supported": methods,
        "revocation_endpoint_auth_methods_supported": [*methods, "none"],
        "dpop_signing_alg_values_supported": ["EdDSA"],
        "scopes_supported": [],
    }
