"""Credential resolution: which agent is this, and may the caller speak for it?

Every request carries exactly one primary credential:

* the bridge key, checked against the configured hashes in constant time,
  with no datastore read;
* a device key, whose checksum is checked before any read; its record and its
  agent are then fetched in one round trip (the key names both) and it is
  accepted only if its hash matches, it is neither revoked nor expired, and its
  agent exists and is not disabled;
* a capability token, verified offline against the embedded public keys, for
  the routes in its scope only.

Beside an agent credential, ``x-agentpack-delegation`` makes the request act
for the grantor. The delegation and the grantor are read in the same round
trip as the device key (the delegation ID names its grantor). Nothing here is
cached, so revocation and disabling hold from the very next request.

Every authentication failure is the same ``401``; every delegation failure the
same ``403``: no oracle.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from shared import clock, config, errors, ids, keys, logs, read_ahead, records, store
from shared.principal import BRIDGE, Principal

if TYPE_CHECKING:
    from shared.access_tokens import AccessToken

BRIDGE_HEADER = "x-agentpack-key"
DEVICE_HEADER = "x-agentpack-device-key"
AUTHORIZATION_HEADER = "authorization"
DELEGATION_HEADER = "x-agentpack-delegation"
PRIMARY_HEADERS = (BRIDGE_HEADER, DEVICE_HEADER, AUTHORIZATION_HEADER)
DELEGATION_REFUSED = "The delegation does not allow this request."

Headers = Mapping[str, Sequence[str]]  # lower-cased header name -> every value sent
DocumentsOf = Callable[[str], Sequence[str]]  # the agent a request acts as -> paths to read beside the credential


class Request(Protocol):
    """What resolution needs of a request (``http.Call`` is one)."""

    @property
    def headers(self) -> Headers: ...

    @property
    def route(self) -> str: ...

    @property
    def request_id(self) -> str: ...


def resolve(
    request: Request,
    *,
    agent_record: bool = False,
    also_read: DocumentsOf | None = None,
    users: bool = False,
    required_scope: str | None = None,
) -> Principal:
    """The verified principal of ``request``.

    A Firebase ID token (a signed-in user) is accepted only where ``users`` says so; elsewhere a valid
    one is ``403``: a route for the other side. An OAuth access token must hold the route's name in
    its scope, or ``required_scope`` where the route names another (``authz:check``).

    Beside the credential, in the same round trip, resolution reads what the call names:
    ``agent_record`` reads the record of the agent the request acts as even where the
    credential itself needs none (a capability token), so a disabled agent is refused at
    once; ``also_read(agent_id)`` names more documents of that agent (it implies
    ``agent_record``), handed back in ``Principal.documents``.
    """
    settings = config.get()  # a broken configuration refuses every request, never serves weaker
    headers = request.headers
    sent = [name for name in PRIMARY_HEADERS for value in headers.get(name, []) for _ in range(_credentials_in(value))]
    if len(sent) > 1:
        raise errors.AmbiguousCredentials()
    if not sent:
        raise errors.Unauthenticated()
    value = headers[sent[0]][0].strip()
    delegation = _delegation_id(headers)
    reads = _Reads(agent_record or also_read is not None, also_read, required_scope or request.route)
    if sent[0] == BRIDGE_HEADER:
        _check_bridge_key(value, settings.bridge_key_hashes)
        if delegation is not None:
            raise errors.Forbidden(DELEGATION_REFUSED)
        principal = BRIDGE
    elif sent[0] == DEVICE_HEADER:
        principal = _resolve_device_key(value, delegation, request.route, reads)
    else:
        principal = _resolve_authorization(value, delegation, request, reads, users)
    logs.note_caller(principal)  # its kind and IDs, for the request's log line
    return principal.for_request(request.request_id)


def _resolve_authorization(
    value: str, delegation_id: str | None, request: Request, reads: _Reads, users: bool
) -> Principal:
    """``Bearer`` or ``DPoP``: tokens are told apart by their JOSE header's ``typ``, each held to its own verifier."""
    scheme, _, token = value.partition(" ")
    scheme, token = scheme.lower(), token.strip()
    if not token or scheme not in ("bearer", "dpop"):
        raise errors.Unauthenticated()
    capability_keys = config.capability_keys()
    if scheme == "bearer" and capability_keys is not None and capability_keys.knows_header(token[: token.find(".")]):
        return _resolve_capability(token, delegation_id, request.route, reads)  # the usual spelling: no decode
    from shared import access_tokens, tokens

    if config.token_signing_keys().known_header(token[: token.find(".")]) is not None:
        return _resolve_access_token(token, scheme == "dpop", delegation_id, request, reads)  # no decode
    typ = access_tokens.header_typ(token)
    if typ == access_tokens.TYP:
        return _resolve_access_token(token, scheme == "dpop", delegation_id, request, reads)
    if scheme == "bearer" and typ == tokens.TYP:
        return _resolve_capability(token, delegation_id, request.route, reads)
    if scheme == "bearer":
        return _resolve_user(token, delegation_id, reads, users)
    raise errors.Unauthenticated()


def _resolve_user(token: str, delegation_id: str | None, reads: _Reads, users: bool) -> Principal:
    """A Firebase ID token of a user registered here: verified by firebase-admin, then one read."""
    from shared import firebase

    user_id = ids.user_id_of(firebase.verify_id_token(token))
    extra = list(reads.documents(user_id)) if reads.documents else []
    user_path = records.user_path(user_id)
    docs = store.get_many([user_path, *extra])
    user: records.UserRecord | None = docs[0]
    if user is None or user["disabled"]:
        raise errors.Unauthenticated()  # an account not registered here, or disabled
    if not users or delegation_id is not None:
        raise errors.Forbidden("This route is not for a signed-in user.")
    return Principal(
        kind="user",
        via="id_token",
        user_id=user_id,
        tenant_id=user["tenant_id"],
        user=user,
        documents=dict(zip(extra, docs[1:], strict=True)),
    )


def check_bridge_key(headers: Headers) -> None:
    """For endpoints that take the bridge key beside other client authentication (introspection)."""
    sent = list(headers.get(BRIDGE_HEADER, []))
    if len(sent) != 1:
        raise errors.Unauthenticated()
    _check_bridge_key(sent[0].strip(), config.get().bridge_key_hashes)


def _credentials_in(value: str) -> int:
    """A header sent twice reaches us joined by a comma (keys and tokens never hold one): count the parts."""
    return max(1, sum(1 for part in value.split(",") if part.strip()))


def _delegation_id(headers: Headers) -> str | None:
    values = headers.get(DELEGATION_HEADER, [])
    if not values:
        return None
    if len(values) > 1 or "," in values[0]:
        return ""  # sent twice: never a valid ID, refused once the primary credential is checked
    return str(values[0]).strip()


def _check_bridge_key(key: str, live_hashes: tuple[str, ...]) -> None:
    if bridge_key_slot(key, live_hashes) is None:
        raise errors.Unauthenticated()


def bridge_key_slot(key: str, live_hashes: tuple[str, ...]) -> int | None:
    """Which configured hash (from 1) a well-formed bridge key matches, or None: not a live bridge key."""
    if not keys.is_bridge_key(key):
        return None
    presented = keys.hash_key(key)
    slot = None
    for number, live in enumerate(live_hashes, start=1):  # compare with every one: the time says not which
        if hmac.compare_digest(presented, live):
            slot = number
    return slot


@dataclass(frozen=True)
class _Reads:
    """What a route asked to read beside its credential."""

    agent: bool
    documents: DocumentsOf | None
    required_scope: str  # what an access token must hold to call the route


@dataclass(frozen=True)
class _Plan:
    """The documents one resolution reads, in one round trip of latency when it may read ahead.

    ``extra`` (the route's documents: a secret) starts with the credential's documents only when
    the credential's tags say the service made it for this caller (``read_ahead``). Without a
    delegation it then comes in the same read; with one it is a second read on its own
    connection, collected only once the credential and the delegation stand and dropped unread
    otherwise. Without read-ahead it is read once they stand. So a request made of a key or a
    delegation ID that the service did not give the caller never makes the datastore touch the
    documents, and its refusal cannot time a secret's name or size.
    """

    agent: str
    delegation: list[str]  # [delegation, grantor], or empty when absent or malformed
    extra: list[str]
    ahead: bool

    @classmethod
    def of(
        cls, agent_id: str, delegation_id: str | None, route: str, reads: _Reads, key_allows: Callable[[], bool]
    ) -> _Plan:
        grantor = ids.grantor_of_delegation(delegation_id) if delegation_id else None
        delegation = (
            [records.delegation_path(delegation_id), records.agent_path(grantor)] if delegation_id and grantor else []
        )
        extra = list(reads.documents(grantor or agent_id)) if reads.documents else []
        ahead = bool(extra) and (
            (delegation_id is None or read_ahead.delegation_allows(delegation_id, agent_id, route, clock.now()))
            and key_allows()
        )
        return cls(records.agent_path(agent_id), delegation, extra, ahead)

    @contextlib.contextmanager
    def extra_read(self) -> Iterator[Callable[[], list[Any]]]:
        """Collects the extra documents: started now when ``ahead`` (dropped unread if never collected)."""
        if not self.ahead:
            yield lambda: store.get_many(self.extra) if self.extra else []  # once it stands: one more round trip
            return
        with store.start_read(self.extra, own_connection=True) as pending:
            yield pending.result


def _resolve_device_key(key: str, delegation_id: str | None, route: str, reads: _Reads) -> Principal:
    name = keys.parse_device_key(key)
    if name is None:
        raise errors.Unauthenticated()
    plan = _Plan.of(name.agent_id, delegation_id, route, reads, lambda: read_ahead.device_key_allows(name, key))
    key_path = records.device_key_path(name.agent_id, name.key_id)
    if delegation_id is None and plan.ahead:
        # The agent's own documents come in the same read as its key: one call, the latency budget of
        # the commonest request.
        read = store.get_many([plan.agent, key_path, *plan.extra])
        return _device_key_principal(key, name, delegation_id, route, plan, read[:2], lambda: read[2:])
    standing = store.start_read([plan.agent, key_path, *plan.delegation])
    with plan.extra_read() as extra:
        return _device_key_principal(key, name, delegation_id, route, plan, standing.result(), extra)


def _device_key_principal(
    key: str,
    name: keys.DeviceKeyName,
    delegation_id: str | None,
    route: str,
    plan: _Plan,
    docs: list[Any],
    extra: Callable[[], list[Any]],
) -> Principal:
    agent: records.AgentRecord | None = docs[0]
    record: records.DeviceKeyRecord | None = docs[1]
    stored_hash = record["key_hash"] if record is not None else None
    if agent is None or stored_hash is None or not keys.hash_matches(key, stored_hash):
        raise errors.Unauthenticated()  # a key pair's record has no hash: it is never a header credential
    assert record is not None
    if not key_is_live(record) or agent["disabled"]:
        raise errors.Unauthenticated()
    principal = Principal(
        kind="agent",
        via="device_key",
        agent_id=name.agent_id,
        actor_id=name.agent_id,
        tenant_id=agent["tenant_id"],
        key_id=name.key_id,
        agent=agent,
        superseded=record["replaced_by"] is not None,
    )
    return _finish(principal, agent, delegation_id, docs[2:], plan, route, extra)


def _resolve_capability(token: str, delegation_id: str | None, route: str, reads: _Reads) -> Principal:
    from shared import tokens  # only requests that carry a token pay for the verifier

    public_keys = config.capability_keys()
    if public_keys is None:
        raise errors.Unauthenticated()
    capability = tokens.verify(
        token, public_keys, now=clock.now(), max_ttl_seconds=config.get().capability_max_ttl_seconds
    )
    if route not in capability.scopes:
        raise errors.Forbidden("The capability token does not allow this route.")
    principal = Principal(kind="agent", via="capability", agent_id=capability.agent_id, actor_id=capability.agent_id)
    if delegation_id is None and not reads.agent:
        return principal  # verified offline: no datastore read
    plan = _Plan.of(capability.agent_id, delegation_id, route, reads, lambda: True)  # verified offline
    standing = store.start_read([plan.agent, *plan.delegation])
    with plan.extra_read() as extra:
        docs = standing.result()
        agent: records.AgentRecord | None = docs[0]
        if agent is None or agent["disabled"]:
            raise errors.Unauthenticated()  # read anyway for this route, so a disabled agent is refused at once
        principal = dataclasses.replace(principal, tenant_id=agent["tenant_id"], agent=agent)
        return _finish(principal, agent, delegation_id, docs[1:], plan, route, extra)


def _finish(
    principal: Principal,
    agent: records.AgentRecord,
    delegation_id: str | None,
    delegation_docs: list[Any],
    plan: _Plan,
    route: str,
    extra: Callable[[], list[Any]],
) -> Principal:
    if delegation_id is not None:
        principal = _act_for_grantor(principal, agent, delegation_id, delegation_docs, route)
    # Only now, the credential and its delegation standing, are the extra documents collected.
    return dataclasses.replace(principal, documents=dict(zip(plan.extra, extra(), strict=True)))


def _act_for_grantor(
    grantee: Principal,
    grantee_record: records.AgentRecord,  # existing and enabled: checked with the credential
    delegation_id: str,
    delegation_docs: list[Any],
    route: str,
) -> Principal:
    grantor_id = ids.grantor_of_delegation(delegation_id)
    if grantor_id is None or len(delegation_docs) != 2:
        raise errors.Forbidden(DELEGATION_REFUSED)
    record: records.DelegationRecord | None = delegation_docs[0]
    grantor: records.AgentRecord | None = delegation_docs[1]
    if not _delegation_stands(record, grantor, grantee.actor_id or "", grantor_id, grantee_record["tenant_id"]):
        raise errors.Forbidden(DELEGATION_REFUSED)
    assert record is not None and grantor is not None  # _delegation_stands said so
    if route not in record["scope"]:
        raise errors.Forbidden(DELEGATION_REFUSED)
    return Principal(
        kind="agent",
        via=grantee.via,
        agent_id=grantor_id,
        actor_id=grantee.actor_id,
        tenant_id=grantor["tenant_id"],
        key_id=grantee.key_id,
        agent=grantor,
        delegation_id=delegation_id,
        superseded=grantee.superseded,
    )


def _resolve_access_token(
    token: str, bound_scheme: bool, delegation_id: str | None, request: Request, reads: _Reads
) -> Principal:
    """An OAuth access token of this issuer, for its audience and the routes its scope names, checked live."""
    import time

    from shared import access_tokens, dpop

    issuer = config.issuer()
    now = time.time()
    claims = access_tokens.verify(token, config.token_signing_keys(), issuer=issuer, now=now)
    if claims.aud != issuer or (claims.jkt is not None) != bound_scheme or claims.actor is not None:
        raise errors.Unauthenticated()  # another audience; a bound token sent as Bearer or the reverse
    proof = None
    if claims.jkt is not None:
        sent = list(request.headers.get("dpop", []))
        if len(sent) != 1:
            raise errors.Unauthenticated()
        url = f"{issuer}/{request.route}"
        proof = dpop.verify(sent[0].strip(), method="POST", url=url, now=now, access_token=token)
        if proof.jkt != claims.jkt:
            raise errors.Unauthenticated()
    standing = access_token_paths(claims)
    # Read ahead only for a route the (signed) scope names: a narrowed token never has them read.
    extra = list(reads.documents(claims.sub)) if reads.documents and reads.required_scope in claims.scopes else []
    paths = list(dict.fromkeys([*standing.all(), *extra]))
    docs = dict(zip(paths, store.get_many(paths), strict=True))
    if not access_token_stands(claims, standing, docs):
        raise errors.Unauthenticated()
    agent: records.AgentRecord = docs[standing.agent]
    key: records.DeviceKeyRecord | None = docs[standing.key] if standing.key is not None else None
    if delegation_id is not None:
        raise errors.Forbidden(DELEGATION_REFUSED)  # a delegation goes beside a device key or capability token
    # The route must be in the token's scope and, now, in what its agent and key still allow.
    if reads.required_scope not in claims.scopes or reads.required_scope not in effective_scopes(agent, key):
        raise errors.Forbidden("The access token does not allow this route.")
    if proof is not None and not store.create_once(
        records.spent_assertion_path(proof.replay_id()),
        {"kind": "dpop_proof", "expire_at": clock.after(2 * dpop.SKEW_SECONDS)},
    ):
        raise errors.Unauthenticated()  # a proof is used once
    return Principal(
        kind="agent",
        via="access_token",
        agent_id=claims.sub,
        actor_id=claims.sub,
        tenant_id=claims.tenant_id,
        key_id=claims.key_id,
        agent=agent,
        family_id=claims.family_id,
        token_jti=claims.jti,
        documents={path: docs[path] for path in extra},
    )


class TokenPaths(NamedTuple):
    """What an access token stands on, each read by name: one round trip in all."""

    agent: str  # the agent that holds the token (act.sub when it acts for a user)
    key: str | None  # the client key it was issued through (None: a public client's, from a family)
    revoked: str  # its revocation record, absent while it stands
    family: str | None  # its refresh-token family, if it came from one
    user: str | None  # the user it acts for, and their grant
    grant: str | None

    def all(self) -> list[str]:
        return [path for path in self if path is not None]


def access_token_paths(claims: AccessToken) -> TokenPaths:
    agent_id = claims.actor or claims.sub
    key_agent = ids.agent_of_device_key(claims.key_id) if claims.key_id is not None else None
    acting = claims.actor is not None
    return TokenPaths(
        agent=records.agent_path(agent_id),
        key=records.device_key_path(key_agent or agent_id, claims.key_id) if claims.key_id is not None else None,
        revoked=records.revoked_token_path(claims.jti),
        family=records.refresh_family_path(claims.family_id) if claims.family_id is not None else None,
        user=records.user_path(claims.sub) if acting else None,
        grant=records.user_grant_path(claims.grant_id or "") if acting else None,
    )


def access_token_stands(claims: AccessToken, paths: TokenPaths, documents: Mapping[str, Any]) -> bool:
    """Whether nothing the token stands on has fallen: its agent enabled (of its tenant), key live, family
    and token not revoked; acting for a user, the user enabled and their grant live. ``paths`` is
    ``access_token_paths(claims)``, as the caller read it; ``documents`` holds ``paths.all()``."""
    agent_id = claims.actor or claims.sub
    agent: records.AgentRecord | None = documents[paths.agent]
    key: records.DeviceKeyRecord | None = documents[paths.key] if paths.key is not None else None
    family: records.RefreshFamilyRecord | None = documents[paths.family] if paths.family is not None else None
    stands = (
        agent is not None
        and not agent["disabled"]
        and agent["tenant_id"] == claims.tenant_id
        and claims.client_id == agent_id
        and documents[paths.revoked] is None
        and (paths.family is None or (family is not None and family["revoked_at"] is None))
        and (
            (key is not None and key_is_live(key) and ids.agent_of_device_key(claims.key_id or "") == agent_id)
            if paths.key is not None
            else paths.family is not None and agent.get("public", False)  # a public client holds no key
        )
    )
    if not stands or paths.user is None or paths.grant is None or claims.actor is None:
        return stands
    user: records.UserRecord | None = documents[paths.user]
    grant: records.UserGrantRecord | None = documents[paths.grant]
    return (
        user is not None
        and not user["disabled"]
        and user["tenant_id"] == claims.tenant_id
        and claims.grant_id == ids.grant_id_of(claims.sub, claims.actor)
        and grant_is_live(grant, claims.sub, claims.actor)
        and grant is not None
        and set(claims.scopes) <= set(grant["actions"])
        and claims.iat >= int(grant["created_at"].timestamp())  # issued under this grant, not one revoked before it
    )


def grant_is_live(grant: records.UserGrantRecord | None, user_id: str, agent_id: str) -> bool:
    """A ``delegate_of`` grant between this user and this agent, neither revoked nor expired."""
    return (
        grant is not None
        and grant["user_id"] == user_id
        and grant["agent_id"] == agent_id
        and grant["revoked_at"] is None
        and clock.now() < grant["expires_at"]
    )


def effective_scopes(agent: records.AgentRecord, key: records.DeviceKeyRecord | None) -> list[str]:
    """What a token got through ``key`` may carry at most, now: the agent's scopes, narrowed by the key's."""
    allowed = list(agent.get("scopes", []))
    narrowed = key.get("scopes") if key is not None else None
    return allowed if narrowed is None else [scope for scope in allowed if scope in narrowed]


def key_is_live(record: records.DeviceKeyRecord) -> bool:
    if record["revoked_at"] is not None:
        return False
    expires_at = record["expires_at"]
    return expires_at is None or clock.now() < expires_at


def _delegation_stands(
    record: records.DelegationRecord | None,
    grantor: records.AgentRecord | None,
    grantee_id: str,
    grantor_id: str,
    grantee_tenant: str,
) -> bool:
    """Addressed to this grantee from this enabled grantor of its tenant, neither revoked nor expired."""
    return (
        record is not None
        and grantor is not None
        and not grantor["disabled"]
        and grantor["tenant_id"] == grantee_tenant
        and record["to_agent"] == grantee_id
        and record["from_agent"] == grantor_id
        and record["revoked_at"] is None
        and clock.now() < record["expires_at"]
    )


def confirm_standing(principal: Principal, documents: Mapping[str, Any]) -> None:
    """Inside a write's transaction: the credential the request was resolved from still stands.

    ``documents`` holds ``principal.standing_paths()`` as read in that transaction, so no change
    lands after a revoke or a disable that answered first: the agent is enabled, the device key
    neither revoked nor expired, the delegation and its grantor still usable.
    """
    if principal.user_id is not None:
        user: records.UserRecord | None = documents[records.user_path(principal.user_id)]
        if user is None or user["disabled"]:
            raise errors.Unauthenticated()
        return
    if principal.is_bridge or principal.actor_id is None:
        return
    actor: records.AgentRecord | None = documents[records.agent_path(principal.actor_id)]
    if actor is None or actor["disabled"]:
        raise errors.Unauthenticated()
    if principal.key_id is not None:
        key: records.DeviceKeyRecord | None = documents[records.device_key_path(principal.actor_id, principal.key_id)]
        if key is None or not key_is_live(key):
            raise errors.Unauthenticated()
    if principal.family_id is not None:
        family: records.RefreshFamilyRecord | None = documents[records.refresh_family_path(principal.family_id)]
        if family is None or family["revoked_at"] is not None:
            raise errors.Unauthenticated()
    if principal.token_jti is not None and documents[records.revoked_token_path(principal.token_jti)] is not None:
        raise errors.Unauthenticated()
    if (
        principal.delegation_id is not None
        and principal.agent_id is not None
        and not _delegation_stands(
            documents[records.delegation_path(principal.delegation_id)],
            documents[records.agent_path(principal.agent_id)],
            principal.actor_id,
            principal.agent_id,
            actor["tenant_id"],
        )
    ):
        raise errors.Forbidden(DELEGATION_REFUSED)
