"""agentpack: the Python client of the agentpack identity service, and the ``agentpack`` command.

    from agentpack import Client, NotFound

    client = Client("http://127.0.0.1:8000", device_key=key)
    try:
        print(client.get_secret("db").value)
    except NotFound:
        ...

``Client.from_env()`` reads ``AGENTPACK_URL`` and the credential variables
(see ``agentpack.config``). Errors are one class per API.md code under
``ApiError``; ``Unavailable`` also covers a service that cannot be reached
(``ConnectionFailed``, ``TimedOut``).
"""

from agentpack.client import DEFAULT_URL, READ_ROUTES, Client, __version__
from agentpack.config import ConfigurationError
from agentpack.errors import (
    AgentpackError,
    AmbiguousCredentials,
    ApiError,
    Conflict,
    ConnectionFailed,
    Forbidden,
    Internal,
    InvalidClient,
    InvalidDpopProof,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    TimedOut,
    Unauthenticated,
    UnauthorizedClient,
    Unavailable,
    UnexpectedResponse,
    UnsupportedGrantType,
    UnsupportedMediaType,
)
from agentpack.models import (
    Agent,
    AgentPage,
    AuditEvent,
    AuditPage,
    CapabilityRecord,
    Delegation,
    DelegationRevocation,
    Delegations,
    DeviceKey,
    Introspection,
    IssuedKey,
    KeyList,
    KeyRevocation,
    Page,
    Secret,
    SecretDeletion,
    SecretInfo,
    SecretList,
    SettingChange,
    Settings,
    TokenAnswer,
    TokenRevocation,
)
from agentpack.rotation import ExpiringKey, Rotation, expiring_keys, rotate_key

__all__ = [
    "DEFAULT_URL",
    "READ_ROUTES",
    "Agent",
    "AgentPage",
    "AgentpackError",
    "AmbiguousCredentials",
    "ApiError",
    "AuditEvent",
    "AuditPage",
    "CapabilityRecord",
    "Client",
    "ConfigurationError",
    "Conflict",
    "ConnectionFailed",
    "Delegation",
    "DelegationRevocation",
    "Delegations",
    "DeviceKey",
    "ExpiringKey",
    "Forbidden",
    "Internal",
    "Introspection",
    "InvalidClient",
    "InvalidDpopProof",
    "InvalidGrant",
    "InvalidRequest",
    "InvalidScope",
    "InvalidTarget",
    "IssuedKey",
    "KeyList",
    "KeyRevocation",
    "MethodNotAllowed",
    "NotFound",
    "Page",
    "PayloadTooLarge",
    "RateLimited",
    "Rotation",
    "Secret",
    "SecretDeletion",
    "SecretInfo",
    "SecretList",
    "SettingChange",
    "Settings",
    "TimedOut",
    "TokenAnswer",
    "TokenRevocation",
    "Unauthenticated",
    "UnauthorizedClient",
    "Unavailable",
    "UnexpectedResponse",
    "UnsupportedGrantType",
    "UnsupportedMediaType",
    "__version__",
    "expiring_keys",
    "rotate_key",
]
