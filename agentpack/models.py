"""Typed answers: one frozen dataclass per answer of the contract, fields named as on the wire.

Every answer is built from the service's JSON by one mechanism, ``parse``, read
from the dataclass's type hints: ``str``, ``int``, ``bool``, ``datetime`` (an
RFC 3339 string), ``X | None``, ``tuple[X, ...]`` (a JSON array), ``dict[str, X]``,
``Any`` and nested answer dataclasses. A field with a default may be absent (an
older service), an optional one may be absent or null; anything else that does
not fit raises ``MalformedAnswer``. Fields the service adds later are ignored.

Times are timezone-aware ``datetime`` objects in UTC. A top-level answer also
carries ``request_id``, the ID of the request that produced it (not part of its
value: it is left out of comparisons and of ``to_dict``). Values that must not
leak into logs (``Secret.value``, ``IssuedKey.device_key``) are left out of
``repr``.
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, is_dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

T = TypeVar("T")
A = TypeVar("A")


def _answer_id() -> Any:
    # Marked so to_dict() can leave it out: it describes the exchange, not the object.
    return field(default=None, kw_only=True, compare=False, repr=False, metadata={"answer": True})


class MalformedAnswer(ValueError):
    """A success answer that lacks a field or has one of the wrong type."""


# ---------------------------------------------------------------- times


def parse_time(text: str) -> datetime:
    """An RFC 3339 time as an aware UTC datetime."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("an RFC 3339 time carries its offset")
    return moment.astimezone(UTC)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    # The module uses postponed annotations: resolve them once per class.
    return typing.get_type_hints(cls)


def _optional(hint: Any) -> Any | None:
    """X for ``X | None``, else None."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        others = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(others) == 1 and len(typing.get_args(hint)) == 2:
            return others[0]
    return None


def _kind(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _convert(hint: Any, value: Any, name: str) -> Any:
    """``value`` (decoded JSON) as ``hint`` says, or MalformedAnswer naming ``name``."""
    inner = _optional(hint)
    if inner is not None:
        return None if value is None else _convert(inner, value, name)
    if hint is Any:
        return value
    if is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, dict):
            raise MalformedAnswer(f"'{name}' is not an object")
        return parse(hint, value)
    if hint is datetime:
        if not isinstance(value, str):
            raise MalformedAnswer(f"'{name}' is missing or not str")
        try:
            return parse_time(value)
        except ValueError:
            raise MalformedAnswer(f"'{name}' is not an RFC 3339 time") from None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if not isinstance(value, list):
            raise MalformedAnswer(f"'{name}' is missing or not list")
        return tuple(_convert(args[0], item, f"{name}[]") for item in value)
    if origin is dict and len(args) == 2 and args[0] is str:
        if not isinstance(value, dict):
            raise MalformedAnswer(f"'{name}' is missing or not dict")
        return {key: _convert(args[1], item, f"{name}.{key}") for key, item in value.items()}
    if hint in (str, int, bool):
        # bool is an int in Python; the contract never mixes them.
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise MalformedAnswer(f"'{name}' is missing or not {hint.__name__}")
        return value
    raise TypeError(f"no JSON form for a field of type {_kind(hint)} ('{name}')")


def _has_default(spec: Field[Any]) -> bool:
    return spec.default is not MISSING or spec.default_factory is not MISSING


def parse(cls: type[A], data: Mapping[str, Any], request_id: str | None = None) -> A:
    """An answer dataclass ``cls`` from its JSON object, its fields checked against their type hints.

    ``request_id`` fills the answer's own ``request_id`` (the exchange's, not part of the value).
    """
    if not (is_dataclass(cls) and isinstance(cls, type)):
        raise TypeError(f"{cls!r} is not an answer dataclass")
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for spec in fields(cls):
        if spec.metadata.get("answer"):
            values[spec.name] = request_id
        elif spec.name in data:
            values[spec.name] = _convert(hints[spec.name], data[spec.name], spec.name)
        elif _has_default(spec):
            continue
        elif _optional(hints[spec.name]) is not None:
            values[spec.name] = None
        else:
            raise MalformedAnswer(f"'{spec.name}' is missing")
    return cls(**values)


def format_time(moment: datetime) -> str:
    """``2026-11-22T10:00:00Z``: the contract's spelling."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------- answers


@dataclass(frozen=True, slots=True)
class Agent:
    agent_id: str
    display_name: str
    tenant_id: str
    created_at: datetime
    disabled: bool
    scopes: tuple[str, ...] = ()  # the most its OAuth access tokens may carry (absent from older services)
    public: bool = False  # a public OAuth client: holds no keys
    request_id: str | None = _answer_id()


class Page(Generic[T]):
    """One page of a paged list; ``next_page_token`` is None on the last page."""

    __slots__ = ()
    next_page_token: str | None

    @property
    def items(self) -> tuple[T, ...]:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class AgentPage(Page[Agent]):
    agents: tuple[Agent, ...]
    next_page_token: str | None
    request_id: str | None = _answer_id()

    @property
    def items(self) -> tuple[Agent, ...]:
        return self.agents


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A new device key. ``device_key`` is shown by the service this once and never again."""

    key_id: str
    agent_id: str
    device_key: str | None = field(repr=False)  # None when a public key (a key pair) was registered
    label: str | None
    created_at: datetime
    expires_at: datetime | None
    scopes: tuple[str, ...] | None = None  # the key's narrower scopes; None: the agent's
    request_id: str | None = _answer_id()


@dataclass(frozen=True, slots=True)
class KeyRevocation:
    key_id: str
    revoked_at: datetime
    request_id: str | None = _answer_id()


@dataclass(frozen=True, slots=True)
class DeviceKey:
    """A device key's record (never the key itself)."""

    key_id: str
    label: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    replaced_by: str | None = None  # the key that replaced this one by rotation (absent from older services)
    scopes: tuple[str, ...] | None = None  # the key's narrower scopes; None: the agent's
    kind: str = "secret"  # secret (a device key) or key_pair (a registered public key, for private_key_jwt)

    def status(self, now: datetime | None = None) -> str:
        """``revoked``, ``expired``, ``rotated`` (replaced, still working through its grace window) or ``active``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or datetime.now(UTC)):
            return "expired"
        if self.replaced_by is not None:
            return "rotated"
        return "active"


@dataclass(frozen=True, slots=True)
class KeyList:
    keys: tuple[DeviceKey, ...]
    request_id: str | None = _answer_id()


@dataclass(frozen=True, slots=True)
class Delegation:
    delegation_id: str
    from_agent: str
    to_agent: str
    scope: tuple[str, ...]
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None
    request_id: str | None = _answer_id()


@dataclass(frozen=True, slots=True)
class DelegationRevocation:
    delegation_id: str
    revoked_at: datetime
    request_id: str | None = _answer_id()


@dataclass(frozen=True, slots=True)
class Delegations:
    """The delegations the caller granted, and those it received."""

    granted: tuple[Delegation, ...]
    received: tuple[Delegation, ...]
    request_id: str | None = _answer_id()


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """A secret's name and version: what ``secrets/put`` and ``secrets/list`` answer, never the value."""

    name: str
    version: int
    updated_at: datetime
    request_id: str | None = _answer_id()


@dataclass(frozen=True, slots=True)
class Secret:
    name: str
    value: str = field(repr=False)
    version: int
    updated_at: datetime
    request_id: str | None = _answer_id()


@dataclass(frozen=True, slots=True)
class SecretList:
    secrets: tuple[SecretInfo, ...]
    request_id: str | None = _answer_id()


@dataclass(frozen=True, slots=True)
class SecretDeletion:
    name: str
    deleted: bool
    request_id: str | None = _answer_id()


@dataclass(frozen=True, slots=True)
class Settings:
    """Every allow-listed setting with its current or default value."""

    settings: dict[str, int]
    request_id: str | None = _answer_id()

    def __getitem__(self, key: str) -> int:
        return self.settings[key]


@dataclass(frozen=True, slots=True)
class SettingChange:
    key: str
    value: int
    updated_at: datetime
    request_id: str | None = _answer_id()


@dataclass(frozen=True, slots=True)
class CapabilityRecord:
    jti: str
    recorded_at: datetime
    request_id: str | None = _answer_id()


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit event. Its ``request_id`` is the request that wrote it."""

    event_id: str
    at: datetime
    category: str
    action: str
    actor: dict[str, Any]
    target: dict[str, Any]
    request_id: str


@dataclass(frozen=True, slots=True)
class AuditPage(Page[AuditEvent]):
    events: tuple[AuditEvent, ...]
    next_page_token: str | None
    request_id: str | None = _answer_id()

    @property
    def items(self) -> tuple[AuditEvent, ...]:
        return self.events


@dataclass(frozen=True, slots=True)
class TokenAnswer:
    """What ``/oauth/token`` answers (RFC 6749 §5.1). The tokens are left out of ``repr``."""

    access_token: str = field(repr=False)
    token_type: str  # Bearer, or DPoP for a token bound to a DPoP key
    expires_in: int
    scope: str  # space-separated; may be empty
    refresh_token: str | None = field(default=None, repr=False)  # jwt-bearer and refresh grants only
    request_id: str | None = _answer_id()

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(self.scope.split())


@dataclass(frozen=True, slots=True)
class Introspection:
    """What ``/oauth/introspect`` answers (RFC 7662): ``active`` alone for a token that is not live."""

    active: bool
    scope: str | None = None
    client_id: str | None = None
    sub: str | None = None
    aud: str | None = None
    iss: str | None = None
    exp: int | None = None
    iat: int | None = None
    jti: str | None = None
    token_type: str | None = None  # Bearer, DPoP, or refresh_token
    tenant_id: str | None = None
    act: dict[str, Any] | None = None  # {"sub": agent} when an agent acts for a user
    request_id: str | None = _answer_id()


@dataclass(frozen=True, slots=True)
class TokenRevocation:
    """What ``/oauth/revoke`` answers: nothing, whether or not the token was known (RFC 7009)."""

    request_id: str | None = _answer_id()


@dataclass(frozen=True, slots=True)
class LeakReport:
    """What ``/keys/report-leak`` answers: how many keys it received, the same whichever were real."""

    received: int
    request_id: str | None = _answer_id()


# ---------------------------------------------------------------- users, their grants, relations


@dataclass(frozen=True, slots=True)
class User:
    """A person registered here (``users/create``), known by its Firebase UID."""

    user_id: str
    firebase_uid: str
    tenant_id: str
    display_name: str | None
    disabled: bool
    created_at: datetime
    request_id: str | None = _answer_id()


@dataclass(frozen=True, slots=True)
class UserPage(Page[User]):
    users: tuple[User, ...]
    next_page_token: str | None
    request_id: str | None = _answer_id()

    @property
    def items(self) -> tuple[User, ...]:
        return self.users


@dataclass(frozen=True, slots=True)
class UserGrant:
    """A user's grant to an agent (``users/delegate``): the agent is the user's ``delegate_of`` for ``actions``."""

    grant_id: str
    user_id: str
    agent_id: str
    actions: tuple[str, ...]
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None  # only in listings
    request_id: str | None = _answer_id()


@dataclass(frozen=True, slots=True)
class UserGrantRevocation:
    grant_id: str
    revoked_at: datetime
    request_id: str | None = _answer_id()


@dataclass(frozen=True, slots=True)
class UserGrants:
    grants: tuple[UserGrant, ...]
    request_id: str | None = _answer_id()


@dataclass(frozen=True, slots=True)
class RelationTuple:
    """``resource`` (``<type>:<id>``) has ``subject`` (``user:usr_…`` or ``agent:agt_…``) as its ``relation``."""

    resource: str
    relation: str  # owner, editor or viewer
    subject: str


@dataclass(frozen=True, slots=True)
class RelationsWritten:
    written: int
    deleted: int
    request_id: str | None = _answer_id()


@dataclass(frozen=True, slots=True)
class RelationTuples:
    tuples: tuple[RelationTuple, ...]
    request_id: str | None = _answer_id()


@dataclass(frozen=True, slots=True)
class Allowed:
    allowed: bool
    request_id: str | None = _answer_id()


# ---------------------------------------------------------------- back to JSON


def to_dict(value: Any) -> Any:
    """An answer as the JSON the service sent: wire field names, RFC 3339 times, no request ID of the exchange."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_dict(getattr(value, f.name)) for f in fields(value) if not f.metadata.get("answer")}
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, list | tuple):
        return [to_dict(item) for item in value]
    if isinstance(value, dict):
        return {key: to_dict(item) for key, item in value.items()}
    return value
