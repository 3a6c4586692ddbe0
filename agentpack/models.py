"""Typed answers: one frozen dataclass per answer of the contract, fields named as on the wire.

Times are timezone-aware ``datetime`` objects in UTC. A top-level answer also
carries ``request_id``, the ID of the request that produced it (not part of its
value: it is left out of comparisons and of ``to_dict``). Values that must not
leak into logs (``Secret.value``, ``IssuedKey.device_key``) are left out of
``repr``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def _answer_id() -> Any:
    # Marked so to_dict() can leave it out: it describes the exchange, not the object.
    return field(default=None, kw_only=True, compare=False, repr=False, metadata={"answer": True})


class MalformedAnswer(ValueError):
    """A success answer that lacks a field or has one of the wrong type."""


# ---------------------------------------------------------------- parsing


def _get(data: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = data.get(name)
    # bool is an int in Python; the contract never mixes them.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise MalformedAnswer(f"'{name}' is missing or not {getattr(kind, '__name__', kind)}")
    return value


def _str(data: Mapping[str, Any], name: str) -> str:
    return str(_get(data, name, str))


def _opt_str(data: Mapping[str, Any], name: str) -> str | None:
    return None if data.get(name) is None else _str(data, name)


def _int(data: Mapping[str, Any], name: str) -> int:
    return int(_get(data, name, int))


def _bool(data: Mapping[str, Any], name: str) -> bool:
    return bool(_get(data, name, bool))


def _dict(data: Mapping[str, Any], name: str) -> dict[str, Any]:
    return dict(_get(data, name, dict))


def _list(data: Mapping[str, Any], name: str) -> list[Any]:
    return list(_get(data, name, list))


def _objects(data: Mapping[str, Any], name: str) -> list[Mapping[str, Any]]:
    items = _list(data, name)
    if not all(isinstance(item, dict) for item in items):
        raise MalformedAnswer(f"'{name}' holds a non-object")
    return items


def parse_time(text: str) -> datetime:
    """An RFC 3339 time as an aware UTC datetime."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("an RFC 3339 time carries its offset")
    return moment.astimezone(UTC)


def _time(data: Mapping[str, Any], name: str) -> datetime:
    try:
        return parse_time(_str(data, name))
    except ValueError:
        raise MalformedAnswer(f"'{name}' is not an RFC 3339 time") from None


def _opt_time(data: Mapping[str, Any], name: str) -> datetime | None:
    return None if data.get(name) is None else _time(data, name)


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
    request_id: str | None = _answer_id()

    @classmethod
    def parse(cls, data: Mapping[str, Any], request_id: str | None = None) -> Agent:
        return cls(
            agent_id=_str(data, "agent_id"),
            display_name=_str(data, "display_name"),
            tenant_id=_str(data, "tenant_id"),
            created_at=_time(data, "created_at"),
            disabled=_bool(data, "disabled"),
            request_id=request_id,
        )


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

    @classmethod
    def parse(cls, data: Mapping[str, Any], request_id: str | None = None) -> AgentPage:
        return cls(
            agents=tuple(Agent.parse(item) for item in _objects(data, "agents")),
            next_page_token=_opt_str(data, "next_page_token"),
            request_id=request_id,
        )


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A new device key. ``device_key`` is shown by the service this once and never again."""

    key_id: str
    agent_id: str
    device_key: str = field(repr=False)
    label: str | None
    created_at: datetime
    expires_at: datetime | None
    request_id: str | None = _answer_id()

    @classmethod
    def parse(cls, data: Mapping[str, Any], request_id: str | None = None) -> IssuedKey:
        return cls(
            key_id=_str(data, "key_id"),
            agent_id=_str(data, "agent_id"),
            device_key=_str(data, "device_key"),
            label=_opt_str(data, "label"),
            created_at=_time(data, "created_at"),
            expires_at=_opt_time(data, "expires_at"),
            request_id=request_id,
        )


@dataclass(frozen=True, slots=True)
class KeyRevocation:
    key_id: str
    revoked_at: datetime
    request_id: str | None = _answer_id()

    @classmethod
    def parse(cls, data: Mapping[str, Any], request_id: str | None = None) -> KeyRevocation:
        return cls(key_id=_str(data, "key_id"), revoked_at=_time(data, "revoked_at"), request_id=request_id)


@dataclass(frozen=True, slots=True)
class DeviceKey:
    """A device key's record (never the key itself)."""

    key_id: str
    label: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def status(self, now: datetime | None = None) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or datetime.now(UTC)):
            return "expired"
        return "active"

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> DeviceKey:
        return cls(
            key_id=_str(data, "key_id"),
            label=_opt_str(data, "label"),
            created_at=_time(data, "created_at"),
            expires_at=_opt_time(data, "expires_at"),
            revoked_at=_opt_time(data, "revoked_at"),
        )


@dataclass(frozen=True, slots=True)
class KeyList:
    keys: tuple[DeviceKey, ...]
    request_id: str | None = _answer_id()

    @classmethod
    def parse(cls, data: Mapping[str, Any], request_id: str | None = None) -> KeyList:
        return cls(keys=tuple(DeviceKey.parse(item) for item in _objects(data, "keys")), request_id=request_id)


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

    @classmethod
    def parse(cls, data: Mapping[str, Any], request_id: str | None = None) -> Delegation:
        scope = _list(data, "scope")
        if not all(isinstance(route, str) for route in scope):
            raise MalformedAnswer("'scope' holds a non-string")
        return cls(
            delegation_id=_str(data, "delegation_id"),
            from_agent=_str(data, "from_agent"),
            to_agent=_str(data, "to_agent"),
            scope=tuple(scope),
            created_at=_time(data, "created_at"),
            expires_at=_time(data, "expires_at"),
            revoked_at=_opt_time(data, "revoked_at"),
            request_id=request_id,
        )


@dataclass(frozen=True, slots=True)
class DelegationRevocation:
    delegation_id: str
    revoked_at: datetime
    request_id: str | None = _answer_id()

    @classmethod
    def parse(cls, data: Mapping[str, Any], request_id: str | None = None) -> DelegationRevocation:
        return cls(
            delegation_id=_str(data, "delegation_id"), revoked_at=_time(data, "revoked_at"), request_id=request_id
        )


@dataclass(frozen=True, slots=True)
class Delegations:
    """The delegations the caller granted, and those it received."""

    granted: tuple[Delegation, ...]
    received: tuple[Delegation, ...]
    request_id: str | None = _answer_id()

    @classmethod
    def parse(cls, data: Mapping[str, Any], request_id: str | None = None) -> Delegations:
        return cls(
            granted=tuple(Delegation.parse(item) for item in _objects(data, "granted")),
            received=tuple(Delegation.parse(item) for item in _objects(data, "received")),
            request_id=request_id,
        )


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """A secret's name and version: what ``secrets/put`` and ``secrets/list`` answer, never the value."""

    name: str
    version: int
    updated_at: datetime
    request_id: str | None = _answer_id()

    @classmethod
    def parse(cls, data: Mapping[str, Any], request_id: str | None = None) -> SecretInfo:
        return cls(
            name=_str(data, "name"),
            version=_int(data, "version"),
            updated_at=_time(data, "updated_at"),
            request_id=request_id,
        )


@dataclass(frozen=True, slots=True)
class Secret:
    name: str
    value: str = field(repr=False)
    version: int
    updated_at: datetime
    request_id: str | None = _answer_id()

    @classmethod
    def parse(cls, data: Mapping[str, Any], request_id: str | None = None) -> Secret:
        return cls(
            name=_str(data, "name"),
            value=_str(data, "value"),
            version=_int(data, "version"),
            updated_at=_time(data, "updated_at"),
            request_id=request_id,
        )


@dataclass(frozen=True, slots=True)
class SecretList:
    secrets: tuple[SecretInfo, ...]
    request_id: str | None = _answer_id()

    @classmethod
    def parse(cls, data: Mapping[str, Any], request_id: str | None = None) -> SecretList:
        return cls(secrets=tuple(SecretInfo.parse(item) for item in _objects(data, "secrets")), request_id=request_id)


@dataclass(frozen=True, slots=True)
class SecretDeletion:
    name: str
    deleted: bool
    request_id: str | None = _answer_id()

    @classmethod
    def parse(cls, data: Mapping[str, Any], request_id: str | None = None) -> SecretDeletion:
        return cls(name=_str(data, "name"), deleted=_bool(data, "deleted"), request_id=request_id)


@dataclass(frozen=True, slots=True)
class Settings:
    """Every allow-listed setting with its current or default value."""

    settings: dict[str, int]
    request_id: str | None = _answer_id()

    def __getitem__(self, key: str) -> int:
        return self.settings[key]

    @classmethod
    def parse(cls, data: Mapping[str, Any], request_id: str | None = None) -> Settings:
        values = _dict(data, "settings")
        return cls(settings={key: _int(values, key) for key in values}, request_id=request_id)


@dataclass(frozen=True, slots=True)
class SettingChange:
    key: str
    value: int
    updated_at: datetime
    request_id: str | None = _answer_id()

    @classmethod
    def parse(cls, data: Mapping[str, Any], request_id: str | None = None) -> SettingChange:
        return cls(
            key=_str(data, "key"),
            value=_int(data, "value"),
            updated_at=_time(data, "updated_at"),
            request_id=request_id,
        )


@dataclass(frozen=True, slots=True)
class CapabilityRecord:
    jti: str
    recorded_at: datetime
    request_id: str | None = _answer_id()

    @classmethod
    def parse(cls, data: Mapping[str, Any], request_id: str | None = None) -> CapabilityRecord:
        return cls(jti=_str(data, "jti"), recorded_at=_time(data, "recorded_at"), request_id=request_id)


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

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> AuditEvent:
        return cls(
            event_id=_str(data, "event_id"),
            at=_time(data, "at"),
            category=_str(data, "category"),
            action=_str(data, "action"),
            actor=_dict(data, "actor"),
            target=_dict(data, "target"),
            request_id=_str(data, "request_id"),
        )


@dataclass(frozen=True, slots=True)
class AuditPage(Page[AuditEvent]):
    events: tuple[AuditEvent, ...]
    next_page_token: str | None
    request_id: str | None = _answer_id()

    @property
    def items(self) -> tuple[AuditEvent, ...]:
        return self.events

    @classmethod
    def parse(cls, data: Mapping[str, Any], request_id: str | None = None) -> AuditPage:
        return cls(
            events=tuple(AuditEvent.parse(item) for item in _objects(data, "events")),
            next_page_token=_opt_str(data, "next_page_token"),
            request_id=request_id,
        )


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
