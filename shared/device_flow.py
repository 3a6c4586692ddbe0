"""Device authorization (RFC 8628): a program with no secret joins by a person's approval.

1. The program (a public agent, or a confidential one authenticated as a client)
   asks ``/oauth/device_authorization`` for a device code and a user code.
2. A person signed in with Firebase opens the activation page, sees which agent
   of which tenant asks for which actions, and approves or denies
   (``/activate/decide``): approval makes the agent ``delegate_of`` the person
   for those actions.
3. The program polls ``/oauth/token`` with the device code until decided, then
   receives, once, an access token to act for the person and a refresh token.

A device authorization is stored under a hash of its user code (the page finds
it by the code); the device code names that document and carries 256 random
bits of which only a hash is stored. Wrong user codes are counted per user: past
``MAX_WRONG_CODES`` in a minute the page is refused (429).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import Field

from shared import change, clients, clock, config, errors, ids, keys, records, schema
from shared.principal import Principal
from shared.records import AgentRecord, DeviceAuthorizationRecord, UserGrantRecord

ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # RFC 8628 §6.1: no vowels, no look-alikes
USER_CODE_LENGTH = 8
EXPIRES_IN = 600
INTERVAL = 5
SLOW_DOWN_STEP = 5
MAX_WRONG_CODES = 5  # per user, in any 60 seconds
WRONG_CODE_WINDOW = timedelta(seconds=60)
ACTIVATE_PATH = "/activate"
_DOC_ID_LENGTH = 64  # a SHA-256 in hex: the start of a device code
_WRONG, _TAKEN = "wrong", "taken"  # outcomes a change returns, to commit its notes


class AuthorizationForm(clients.ClientForm):
    scope: str | None = clients.PARAMETER


class Decide(schema.Body):
    user_code: Annotated[str, Field(max_length=32)]
    approve: bool


def new_user_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(USER_CODE_LENGTH))


def shown(user_code: str) -> str:
    """``XXXX-XXXX``, as a person reads and types it."""
    return f"{user_code[:4]}-{user_code[4:]}"


def normalized(typed: str) -> str | None:
    """The 8 letters of a code as a person may type it (any case, a dash or spaces), or None."""
    letters = typed.replace("-", "").replace(" ", "").upper()
    if len(letters) != USER_CODE_LENGTH or not set(letters) <= set(ALPHABET):
        return None
    return letters


def _device_code(document_id: str) -> str:
    return document_id + keys.random_secret()


def _document_of(device_code: str) -> str | None:
    document_id = device_code[:_DOC_ID_LENGTH]
    if len(device_code) <= _DOC_ID_LENGTH or not all(ch in "0123456789abcdef" for ch in document_id):
        return None
    return f"{records.DEVICE_AUTHORIZATIONS}/{document_id}"


def start(request: Any, form: AuthorizationForm, requested: list[str] | None) -> dict[str, Any]:
    """RFC 8628 §3.1-3.2: a device code and a user code for the client, pending a person's decision."""
    presented = clients.presented(request.headers, form.model_dump())
    principal = clients.principal(presented.client_id, presented.key_id, request.request_id)
    issuer = config.issuer()
    for _ in range(3):  # a user code already in use is drawn again
        user_code = new_user_code()
        path = records.device_authorization_path(user_code)
        device_code = _device_code(path.rsplit("/", 1)[1])

        def work(c: change.Change, path: str = path, user_code: str = user_code, device_code: str = device_code) -> str:
            audiences = (issuer + "/oauth/device_authorization", issuer)
            client = clients.authenticate(presented, c, audiences=audiences, now=c.now.timestamp())
            if c[path] is not None:
                return _TAKEN
            agent: AgentRecord = client.agent
            allowed = list(agent.get("scopes", []))
            scopes = list(allowed) if requested is None else requested
            if not set(scopes) <= set(allowed):
                raise errors.InvalidScope()
            expires = c.now + timedelta(seconds=EXPIRES_IN)
            record: DeviceAuthorizationRecord = {
                "user_code": user_code,
                "device_code_hash": keys.hash_key(device_code),
                "client_id": client.agent_id,
                "tenant_id": agent["tenant_id"],
                "agent_display_name": agent["display_name"],
                "scopes": scopes,
                "created_at": c.now,
                "expires_at": expires,
                "interval": INTERVAL,
                "next_poll_at": c.now,
                "status": "pending",
                "user_id": None,
                "decided_at": None,
                "expire_at": expires + timedelta(days=1),
            }
            c.create(path, record)
            clients.spend_assertion(c, presented.assertion)
            target = {"kind": "device_authorization", "agent_id": client.agent_id, "scope": " ".join(scopes)}
            c.record("device_authorization.start", target)
            return device_code

        outcome = change.apply(principal, [*presented.paths(), path], work, refused=presented.failure)
        if outcome != _TAKEN:
            uri = issuer + ACTIVATE_PATH
            return {
                "device_code": outcome,
                "user_code": shown(user_code),
                "verification_uri": uri,
                "verification_uri_complete": f"{uri}?user_code={shown(user_code)}",
                "expires_in": EXPIRES_IN,
                "interval": INTERVAL,
            }
    raise errors.Unavailable("No free user code; retry.")


class Lookup(schema.Body):
    user_code: Annotated[str, Field(max_length=32)]


def _pending_for(
    c: change.Change, principal: Principal, path: str | None, failures_path: str
) -> DeviceAuthorizationRecord | str | errors.RateLimited:
    """The pending authorization a person named, or why not: rate-limited, or wrong (counted)."""
    failures: records.ActivationFailuresRecord | None = c[failures_path]
    recent = [t for t in (failures["times"] if failures else []) if t > c.now - WRONG_CODE_WINDOW]
    if len(recent) >= MAX_WRONG_CODES:
        wait = int((min(recent) + WRONG_CODE_WINDOW - c.now).total_seconds())  # until the oldest ages out
        return errors.RateLimited("Too many wrong codes: wait a minute.", retry_after=max(1, wait))
    record: DeviceAuthorizationRecord | None = c[path] if path is not None else None
    if (
        record is None
        or record["status"] != "pending"
        or c.now >= record["expires_at"]
        or record["tenant_id"] != principal.tenant_id
    ):
        counted = {"user_id": principal.user_id, "times": [*recent, c.now], "expire_at": c.now + WRONG_CODE_WINDOW}
        c.note(failures_path, counted)
        return _WRONG  # unknown, expired, decided, or another tenant's: one answer for all
    return record


Act = Callable[[change.Change, DeviceAuthorizationRecord, str], dict[str, Any]]


def _as_person(principal: Principal, typed_code: str, act: Act) -> dict[str, Any]:
    """Run ``act(change, record, path)`` on the pending authorization a signed-in person named."""
    if principal.kind != "user" or principal.user_id is None:
        raise errors.Forbidden("Only a signed-in user may do this.")
    user_code = normalized(typed_code)
    failures_path = records.activation_failures_path(principal.user_id)
    path = records.device_authorization_path(user_code) if user_code is not None else None

    def work(c: change.Change) -> dict[str, Any] | str | errors.RateLimited:
        found = _pending_for(c, principal, path, failures_path)
        if isinstance(found, str | errors.RateLimited):
            return found
        assert path is not None
        return act(c, found, path)

    outcome = change.apply(principal, [failures_path, *([path] if path else [])], work)
    if isinstance(outcome, errors.RateLimited):
        raise outcome
    if isinstance(outcome, str):
        raise errors.NotFound("No such pending code.")
    return outcome


def lookup(body: Lookup, principal: Principal) -> dict[str, Any]:
    """What the activation page shows a person before the decision: which agent, which tenant, which actions."""

    def show(c: change.Change, record: DeviceAuthorizationRecord, path: str) -> dict[str, Any]:
        return {
            "user_code": shown(record["user_code"]),
            "agent_id": record["client_id"],
            "agent_display_name": record["agent_display_name"],
            "tenant_id": record["tenant_id"],
            "actions": list(record["scopes"]),
            "expires_at": clock.rfc3339(record["expires_at"]),
        }

    return _as_person(principal, body.user_code, show)


def decide(body: Decide, principal: Principal) -> dict[str, Any]:
    """A signed-in person approves or denies a pending code of an agent of its tenant (``/activate/decide``).

    Approval makes the agent the person's ``delegate_of`` for the asked actions, for
    ``user_delegation_max_ttl_seconds``."""
    user_id = principal.user_id or ""

    def settle(c: change.Change, record: DeviceAuthorizationRecord, path: str) -> dict[str, Any]:
        record["status"] = "approved" if body.approve else "denied"
        record["user_id"] = user_id
        record["decided_at"] = c.now
        c.set(path, record)
        agent_id = record["client_id"]
        target = {"kind": "device_authorization", "agent_id": agent_id, "user_id": user_id, "approved": body.approve}
        c.record("device_authorization.decide", target)
        if body.approve:
            grant_id = ids.grant_id_of(user_id, agent_id)
            grant: UserGrantRecord = {
                "grant_id": grant_id,
                "user_id": user_id,
                "agent_id": agent_id,
                "tenant_id": record["tenant_id"],
                "actions": list(record["scopes"]),
                "created_at": c.now,
                "expires_at": c.now + timedelta(seconds=c.settings["user_delegation_max_ttl_seconds"]),
                "revoked_at": None,
            }
            c.set(records.user_grant_path(grant_id), grant)
            granted = {"kind": "user_grant", "grant_id": grant_id, "user_id": user_id, "agent_id": agent_id}
            c.record("user_delegation.grant", {**granted, "actions": grant["actions"]})
        return {"user_code": shown(record["user_code"]), "approved": body.approve}

    return _as_person(principal, body.user_code, settle)


Poll = Literal["pending", "slow_down", "denied", "used", "expired"]


def poll(c: change.Change, device_code: str, client_id: str) -> DeviceAuthorizationRecord | Poll:
    """Inside the token request's change: the approved authorization (now spent), or why not yet.

    A poll notes its time (bookkeeping, no event); a poll sooner than the interval slows the program
    down by ``SLOW_DOWN_STEP`` seconds (RFC 8628 §3.5)."""
    path = _document_of(device_code)
    record: DeviceAuthorizationRecord | None = c[path] if path is not None else None
    if (
        path is None
        or record is None
        or record["client_id"] != client_id
        or not keys.hash_matches(device_code, record["device_code_hash"])
    ):
        raise errors.InvalidGrant()
    if record["status"] == "used":
        return "used"
    if c.now >= record["expires_at"]:
        return "expired"
    if record["status"] == "denied":
        return "denied"
    if record["status"] == "pending":
        slow = c.now < record["next_poll_at"]
        if slow:
            record["interval"] += SLOW_DOWN_STEP
        record["next_poll_at"] = c.now + timedelta(seconds=record["interval"])
        c.note(path, record)
        return "slow_down" if slow else "pending"
    record["status"] = "used"
    c.set(path, record)
    return record


def device_code_path(device_code: str | None) -> str | None:
    return _document_of(device_code) if device_code is not None else None
