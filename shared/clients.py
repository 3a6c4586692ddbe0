"""OAuth client authentication (RFC 6749 §2.3, RFC 7523 §2.2): which agent is this client, proven how.

Clients are agents; ``client_id`` is an ``agent_id``. A confidential client
proves itself with one of its live device keys as the secret
(``client_secret_basic``, ``client_secret_post``) or with an EdDSA assertion
signed by a key pair registered through ``device/issue`` (``private_key_jwt``);
a public agent sends only its ``client_id``. Presenting is parsed here without
I/O; the records it names (agent, key, the assertion's spent-``jti`` record) are
read by the caller in one round trip, and ``authenticate`` decides. Every
failure is the same ``invalid_client`` (401, with a ``Basic`` challenge when the
client used HTTP Basic): no oracle tells a wrong secret from a revoked key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, Protocol

from pydantic import Field

from shared import change, crypto, errors, ids, jws, keys, logs, records, schema, strictjson
from shared.credentials import key_is_live
from shared.principal import Principal

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")
SKEW_SECONDS = 60
MAX_ASSERTION_LIFE_SECONDS = 3600
REFUSED = "invalid assertion"
Method = Literal["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]
PARAMETER = Field(default=None, max_length=8192)  # every OAuth form parameter: optional text, bounded


class ClientForm(schema.Form):
    """The client-authentication parameters every OAuth endpoint's form may carry (RFC 6749 §2.3.1, RFC 7523)."""

    client_id: str | None = PARAMETER
    client_secret: str | None = PARAMETER
    client_assertion_type: str | None = PARAMETER
    client_assertion: str | None = PARAMETER


@dataclass(frozen=True)
class Assertion:
    """A client assertion, parsed but not yet verified: it names the key that must have signed it."""

    parts: jws.Parts
    key_id: str
    agent_id: str
    jti: str

    def spent_path(self) -> str:
        return records.spent_assertion_path(spent_digest("client_assertion", self.agent_id, self.jti))


def spent_digest(kind: str, *parts: str) -> str:
    """A document ID for a single-use value: a hash, so IDs spread evenly and carry nothing readable."""
    return hashlib.sha256("\x00".join((kind, *parts)).encode()).hexdigest()


def parse_assertion(text: str, failure: errors.ApiError) -> Assertion:
    """The key and ``jti`` an assertion names. Only the ``jti`` is read before the signature is checked,
    to name the record that makes it single-use; every claim is checked once it is signed."""
    try:
        parts = jws.split(text, REFUSED)
    except errors.TokenRefused:
        raise failure from None
    header = parts.header
    kid = header.get("kid")
    agent_id = ids.agent_of_device_key(kid) if type(kid) is str else None
    if (
        agent_id is None
        or header.get("alg") != jws.ALG
        or not set(header) <= {"alg", "kid", "typ"}
        or header.get("typ", "JWT") != "JWT"
    ):
        raise failure
    try:
        jti = (strictjson.object_of(jws.b64decode(parts.claims_segment)) or {}).get("jti")
    except ValueError:
        raise failure from None
    if type(jti) is not str or not 1 <= len(jti) <= 256:
        raise failure
    return Assertion(parts, str(kid), agent_id, jti)


def verify_assertion(
    assertion: Assertion, key: records.DeviceKeyRecord | None, *, audiences: Sequence[str], now: float
) -> bool:
    """Whether ``assertion`` is signed by its live key pair and its claims hold (RFC 7523 §3)."""
    if key is None or key.get("kind") != "key_pair" or not key_is_live(key) or not key.get("public_key"):
        return False
    public_key = jws.b64decode(str(key["public_key"]))
    try:
        claims = jws.signed_claims(assertion.parts, crypto.verifier(public_key), REFUSED)
    except errors.TokenRefused:
        return False
    aud, exp = claims.get("aud"), claims.get("exp")
    audience_ok = aud in audiences if type(aud) is str else type(aud) is list and any(a in audiences for a in aud)
    nbf, iat = claims.get("nbf", 0), claims.get("iat", 0)
    if type(exp) is not int or type(nbf) is not int or type(iat) is not int:
        return False  # true and 1.0 are not JSON integers here
    return (
        claims.get("iss") == assertion.agent_id
        and claims.get("sub") == assertion.agent_id
        and audience_ok
        and now - SKEW_SECONDS <= exp <= now + MAX_ASSERTION_LIFE_SECONDS + SKEW_SECONDS
        and nbf <= now + SKEW_SECONDS
        and iat <= now + SKEW_SECONDS
    )


@dataclass(frozen=True)
class Presented:
    """The client authentication a request carries, parsed without I/O."""

    client_id: str
    method: Method
    secret: str | None = None
    assertion: Assertion | None = None

    @property
    def key_id(self) -> str | None:
        if self.assertion is not None:
            return self.assertion.key_id
        name = keys.parse_device_key(self.secret) if self.secret is not None else None
        return name.key_id if name is not None and name.agent_id == self.client_id else None

    def failure(self) -> errors.InvalidClient:
        return errors.InvalidClient(basic=self.method == "client_secret_basic")

    def paths(self) -> list[str]:
        """What ``authenticate`` needs read: the agent, its key, and the assertion's spent record."""
        found = [records.agent_path(self.client_id)]
        if self.key_id is not None:
            found.append(records.device_key_path(self.client_id, self.key_id))
        if self.assertion is not None:
            found.append(self.assertion.spent_path())
        return found


def presented(headers: Mapping[str, Sequence[str]], form: Mapping[str, Any]) -> Presented:
    """The client authentication of a request (headers lower-cased; the form's client parameters)."""
    authorization = list(headers.get("authorization", []))
    basic = _basic(authorization)
    secret, assertion = form.get("client_secret"), form.get("client_assertion")
    assertion_type, client_id = form.get("client_assertion_type"), form.get("client_id")
    ways = sum(x is not None for x in (basic, secret, assertion))
    if ways > 1:
        raise errors.InvalidRequest("Use one client authentication method.")
    if basic is not None:
        basic_id, basic_secret = basic
        if client_id is not None and client_id != basic_id:
            raise errors.InvalidClient(basic=True)
        return _checked(Presented(basic_id, "client_secret_basic", secret=basic_secret))
    if secret is not None:
        return _checked(Presented(client_id or "", "client_secret_post", secret=secret))
    if assertion is not None:
        if assertion_type != ASSERTION_TYPE:
            raise errors.InvalidClient()
        parsed = parse_assertion(assertion, errors.InvalidClient())
        if client_id is not None and client_id != parsed.agent_id:
            raise errors.InvalidClient()
        return Presented(parsed.agent_id, "private_key_jwt", assertion=parsed)
    if client_id is None:
        raise errors.InvalidClient()
    return _checked(Presented(client_id, "none"))


def _checked(client: Presented) -> Presented:
    """Refuse before any read what can never authenticate: a malformed ID, a key of another agent."""
    if not ids.is_agent_id(client.client_id) or (client.secret is not None and client.key_id is None):
        raise client.failure()
    return client


def _basic(authorization: list[str]) -> tuple[str, str] | None:
    """``(client_id, secret)`` of an HTTP Basic header (each form-urlencoded, RFC 6749 §2.3.1)."""
    if not authorization:
        return None
    scheme, _, encoded = authorization[0].strip().partition(" ")
    if len(authorization) != 1 or scheme.lower() != "basic":
        raise errors.InvalidClient()
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise errors.InvalidClient(basic=True) from None
    user, colon, password = decoded.partition(":")
    if not colon:
        raise errors.InvalidClient(basic=True)
    return urllib.parse.unquote_plus(user), urllib.parse.unquote_plus(password)


class Documents(Protocol):
    """Documents read by path (a mapping, or a ``change.Change``)."""

    def __getitem__(self, path: str, /) -> Any: ...


def spend_assertion(c: change.Change, assertion: Assertion | None) -> None:
    """Record a client assertion's ``jti`` as used, for as long as any assertion could still be accepted.

    Bookkeeping, not a change of identity state: it lands with the request's change, or alone when the
    request changes nothing (revoking an unknown token)."""
    if assertion is not None:
        spent: records.SpentAssertionRecord = {
            "kind": "client_assertion",
            "expire_at": c.now + timedelta(seconds=2 * MAX_ASSERTION_LIFE_SECONDS),
        }
        c.note(assertion.spent_path(), spent)


def principal(agent_id: str, key_id: str | None, request_id: str) -> Principal:
    """The client as the actor of an OAuth change; its agent and key are re-read, and re-checked, with it."""
    return Principal(
        kind="agent", via="client", request_id=request_id, agent_id=agent_id, actor_id=agent_id, key_id=key_id
    )


@dataclass(frozen=True)
class Client:
    """An authenticated client: its agent, and the key it proved itself with (None for a public agent)."""

    agent: records.AgentRecord
    key: records.DeviceKeyRecord | None
    method: Method

    @property
    def agent_id(self) -> str:
        return self.agent["agent_id"]


def authenticate(client: Presented, documents: Documents, *, audiences: Sequence[str], now: float) -> Client:
    """Decide, from the records ``client.paths()`` named: the client, or ``invalid_client``."""
    authenticated = _authenticated(client, documents, audiences=audiences, now=now)
    logs.note_client(authenticated.agent_id)  # for the request's log line, once it is proven
    return authenticated


def _authenticated(client: Presented, documents: Documents, *, audiences: Sequence[str], now: float) -> Client:
    agent: records.AgentRecord | None = documents[records.agent_path(client.client_id)]
    if agent is None or agent["disabled"]:
        raise client.failure()
    key_id = client.key_id
    key: records.DeviceKeyRecord | None = (
        documents[records.device_key_path(client.client_id, key_id)] if key_id is not None else None
    )
    if client.method == "none":
        if not agent.get("public", False):
            raise client.failure()  # a confidential client authenticates on every grant
        return Client(agent, None, "none")
    if client.assertion is not None:
        if documents[client.assertion.spent_path()] is not None:
            raise client.failure()  # an assertion is used once
        if not verify_assertion(client.assertion, key, audiences=audiences, now=now):
            raise client.failure()
        return Client(agent, key, client.method)
    stored = key["key_hash"] if key is not None else None
    if key is None or stored is None or client.secret is None or not keys.hash_matches(client.secret, stored):
        raise client.failure()
    if not key_is_live(key):
        raise client.failure()
    return Client(agent, key, client.method)
