"""The answers of every route, as pydantic models: what the domain code returns, field for field.

Nothing on a request's path builds these; they exist so the OpenAPI document
(``shared.openapi``) is generated from models, and so the tests can validate
every real answer against them with unknown fields refused (drift either way
fails). Times are RFC 3339 UTC strings to the second; absent optional values
are ``null``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared import allowlist


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)


Timestamp = Annotated[
    str,
    Field(
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$",
        json_schema_extra={"format": "date-time"},
        description="RFC 3339, UTC, whole seconds.",
    ),
]
AgentId = Annotated[str, Field(pattern=r"^agt_[0-9A-Za-z]{22}$")]
KeyId = Annotated[str, Field(pattern=r"^dk_[0-9A-Za-z]{44}$")]
DelegationId = Annotated[str, Field(pattern=r"^dlg_[0-9A-Za-z]{44}$")]
EventId = Annotated[str, Field(pattern=r"^evt_[0-9]{13}[0-9A-Za-z]{10}$")]
UserId = Annotated[str, Field(pattern=r"^usr_[0-9A-Za-z]{22}$")]
GrantId = Annotated[str, Field(pattern=r"^ugr_[0-9A-Za-z]{44}$")]
UserAction = Literal["read", "write", "delete", "share"]
# DelegableRoute and AuditAction repeat delegations.DELEGABLE_ROUTES and audit.ACTIONS; a test keeps them in step.
DelegableRoute = Literal["secrets/get", "secrets/put", "secrets/list", "secrets/delete"]
AuditAction = Literal[
    "agent.create",
    "agent.update",
    "device.issue",
    "device.rotate",
    "device.revoke",
    "delegation.grant",
    "delegation.revoke",
    "secret.put",
    "secret.delete",
    "secret.integrity_failure",
    "secret.reseal",
    "setting.set",
    "capability.record",
    "token.issue",
    "token.refresh",
    "token.revoke",
    "token.reuse_detected",
    "user.create",
    "user.update",
    "user_delegation.grant",
    "user_delegation.revoke",
    "relation.write",
    "device_authorization.start",
    "device_authorization.decide",
    "key.leak_reported",
]
ErrorCode = Literal[
    "invalid_request",
    "ambiguous_credentials",
    "unauthenticated",
    "forbidden",
    "not_found",
    "method_not_allowed",
    "conflict",
    "payload_too_large",
    "unsupported_media_type",
    "rate_limited",
    "unavailable",
    "internal",
    # The OAuth endpoints' own (RFC 6749 §5.2, RFC 8707, RFC 9449).
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_target",
    "invalid_dpop_proof",
    # RFC 8628's, for the device-code grant.
    "authorization_pending",
    "slow_down",
    "access_denied",
    "expired_token",
]


class ErrorBody(Answer):
    """Every error answer. The description is fixed text: it never echoes input, a key or a secret."""

    error: ErrorCode
    error_description: str


# --- agents -------------------------------------------------------------------------------


class Agent(Answer):
    agent_id: AgentId
    display_name: str
    tenant_id: str
    created_at: Timestamp
    disabled: bool
    scopes: list[str] = Field(description="The most the agent's OAuth access tokens may carry.")
    public: bool = Field(description="A public OAuth client: holds no keys; only the device-code and refresh grants.")


class AgentPage(Answer):
    agents: list[Agent]
    next_page_token: str | None = Field(description="Pass as page_token for the next page; null on the last page.")


# --- device keys ----------------------------------------------------------------------------


class IssuedKey(Answer):
    key_id: KeyId
    agent_id: AgentId
    device_key: str | None = Field(
        default=None,
        pattern=r"^apkd_[0-9A-Za-z]{93}$",
        description="The key itself: shown in this answer only, never again. Absent when a public_key was registered.",
    )
    label: str | None
    created_at: Timestamp
    expires_at: Timestamp | None = Field(description="null: the key does not expire.")
    scopes: list[str] | None = Field(description="The key's narrower scopes; null: the agent's scopes.")


class RevokedKey(Answer):
    key_id: KeyId
    revoked_at: Timestamp = Field(description="When the key was first revoked.")


class DeviceKey(Answer):
    key_id: KeyId
    label: str | None
    created_at: Timestamp
    expires_at: Timestamp | None
    revoked_at: Timestamp | None
    replaced_by: KeyId | None = Field(
        description="The key that replaced this one by rotation (it then lives out its grace window), or null."
    )
    scopes: list[str] | None = Field(description="The key's narrower scopes; null: the agent's scopes.")
    kind: Literal["secret", "key_pair"] = Field(
        description="secret: a device key (a header credential); key_pair: a registered public key (private_key_jwt)."
    )


class DeviceKeyList(Answer):
    keys: list[DeviceKey] = Field(description="Oldest first, revoked and expired keys included; at most 1,000.")


# --- delegations ----------------------------------------------------------------------------


class Delegation(Answer):
    delegation_id: DelegationId
    from_agent: AgentId
    to_agent: AgentId
    scope: list[DelegableRoute]
    created_at: Timestamp
    expires_at: Timestamp


class ListedDelegation(Delegation):
    revoked_at: Timestamp | None


class DelegationLists(Answer):
    granted: list[ListedDelegation] = Field(description="Made by the caller; expired and revoked ones included.")
    received: list[ListedDelegation] = Field(description="Addressed to the caller; expired and revoked ones included.")


class RevokedDelegation(Answer):
    delegation_id: DelegationId
    revoked_at: Timestamp = Field(description="When the delegation was first revoked.")


# --- secrets --------------------------------------------------------------------------------


class SecretVersion(Answer):
    name: str
    version: int = Field(ge=1)
    updated_at: Timestamp


class SecretValue(SecretVersion):
    value: str


class SecretList(Answer):
    secrets: list[SecretVersion] = Field(description="By name; never values.")


class SecretDeleted(Answer):
    name: str
    deleted: Literal[True]


# --- settings -------------------------------------------------------------------------------


def _setting(key: str) -> Any:
    rule = allowlist.ALLOW_LIST[key]
    return Field(ge=rule.minimum, le=rule.maximum, description=f"Default {rule.default}.")


class SettingValues(Answer):
    """Every allow-listed setting, with its stored value or its default."""

    delegation_max_ttl_seconds: Annotated[int, _setting("delegation_max_ttl_seconds")]
    device_key_max_active: Annotated[int, _setting("device_key_max_active")]
    rotation_grace_seconds: Annotated[int, _setting("rotation_grace_seconds")]
    secret_max_bytes: Annotated[int, _setting("secret_max_bytes")]
    audit_retention_days: Annotated[int, _setting("audit_retention_days")]
    access_token_ttl_seconds: Annotated[int, _setting("access_token_ttl_seconds")]
    refresh_token_ttl_seconds: Annotated[int, _setting("refresh_token_ttl_seconds")]
    user_delegation_max_ttl_seconds: Annotated[int, _setting("user_delegation_max_ttl_seconds")]


class SettingList(Answer):
    settings: SettingValues


class SettingChanged(Answer):
    key: str
    value: int
    updated_at: Timestamp


# --- capability tokens ----------------------------------------------------------------------


class CapabilityRecorded(Answer):
    jti: str
    recorded_at: Timestamp


# --- audit ----------------------------------------------------------------------------------


class Actor(Answer):
    kind: Literal["bridge", "agent", "user", "public"] = Field(description="public: anyone (a leak report).")
    agent_id: AgentId | None = Field(None, description="The agent holding the credential; absent for the bridge.")
    on_behalf_of: AgentId | None = Field(None, description="The grantor, when the request used a delegation.")
    user_id: UserId | None = Field(None, description="The signed-in user, for kind user.")


class AgentTarget(Answer):
    kind: Literal["agent"]
    agent_id: AgentId
    tenant_id: str | None = Field(None, description="On agent.create.")
    changes: list[Literal["display_name", "disabled", "scopes", "public"]] | None = Field(
        None, description="On agent.update."
    )


class DeviceKeyTarget(Answer):
    kind: Literal["device_key"]
    key_id: KeyId
    agent_id: AgentId
    replaces_key_id: KeyId | None = Field(None, description="On device.rotate: the key replaced.")


class DelegationTarget(Answer):
    kind: Literal["delegation"]
    delegation_id: DelegationId
    agent_id: AgentId = Field(description="The grantee.")
    from_agent: AgentId = Field(description="The grantor.")
    scope: list[DelegableRoute] | None = Field(None, description="On delegation.grant.")


class SecretTarget(Answer):
    kind: Literal["secret"]
    agent_id: AgentId
    name: str
    version: int | None = Field(None, description="Absent on secret.integrity_failure.")
    key_version: int | None = Field(None, description="On secret.reseal: the key version now sealing it.")
    previous_key_version: int | None = Field(None, description="On secret.reseal.")


class SettingTarget(Answer):
    kind: Literal["setting"]
    key: str
    previous: int
    value: int


class CapabilityTarget(Answer):
    kind: Literal["capability"]
    jti: str
    agent_id: AgentId
    kid: str
    scope: str


class AccessTokenTarget(Answer):
    """token.issue, token.refresh (with the grant, scope and audience) and token.revoke: never the token."""

    kind: Literal["access_token"]
    agent_id: AgentId = Field(description="The client the token was issued to.")
    jti: str
    grant_type: (
        Literal[
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "refresh_token",
            "urn:ietf:params:oauth:grant-type:token-exchange",
            "urn:ietf:params:oauth:grant-type:device_code",
        ]
        | None
    ) = Field(None, description="On token.issue and token.refresh.")
    user_id: UserId | None = Field(None, description="On token.issue of a token acting for a user.")
    grant_id: GrantId | None = Field(None, description="On token.issue of a token acting for a user: the grant.")
    scope: str | None = Field(None, description="On token.issue and token.refresh: the token's scope.")
    aud: str | None = Field(None, description="On token.issue and token.refresh: the token's audience.")
    family_id: str | None = Field(None, description="The refresh-token family, for tokens that have one.")


class RefreshFamilyTarget(Answer):
    """token.revoke of a refresh token, and token.reuse_detected: the whole family is revoked."""

    kind: Literal["refresh_family"]
    agent_id: AgentId = Field(description="The client the family was issued to.")
    family_id: str


class UserTarget(Answer):
    kind: Literal["user"]
    user_id: UserId
    tenant_id: str | None = Field(None, description="On user.create.")
    changes: list[Literal["display_name", "disabled"]] | None = Field(None, description="On user.update.")


class UserGrantTarget(Answer):
    kind: Literal["user_grant"]
    grant_id: GrantId
    user_id: UserId
    agent_id: AgentId
    actions: list[UserAction] | None = Field(None, description="On user_delegation.grant.")


class RelationsTarget(Answer):
    kind: Literal["relations"]
    tenant_id: str
    written: int
    deleted: int


class DeviceAuthorizationTarget(Answer):
    kind: Literal["device_authorization"]
    agent_id: AgentId
    scope: str | None = Field(None, description="On device_authorization.start: the actions asked for.")
    user_id: UserId | None = Field(None, description="On device_authorization.decide.")
    approved: bool | None = Field(None, description="On device_authorization.decide.")


class BridgeKeyTarget(Answer):
    """key.leak_reported of a live bridge key: configuration, reported for the operator to replace."""

    kind: Literal["bridge_key"]
    slot: int = Field(ge=1, description="Which configured bridge-key hash it matched, from 1.")


AuditTarget = Annotated[
    BridgeKeyTarget
    | UserTarget
    | UserGrantTarget
    | RelationsTarget
    | DeviceAuthorizationTarget
    | AgentTarget
    | DeviceKeyTarget
    | DelegationTarget
    | SecretTarget
    | SettingTarget
    | CapabilityTarget
    | AccessTokenTarget
    | RefreshFamilyTarget,
    Field(discriminator="kind"),
]


class AuditEvent(Answer):
    event_id: EventId
    at: Timestamp
    category: Literal["auth"]
    action: AuditAction
    actor: Actor
    target: AuditTarget
    request_id: str = Field(description="The x-request-id of the request that wrote the event.")


class AuditPage(Answer):
    events: list[AuditEvent] = Field(description="Newest first.")
    next_page_token: str | None = Field(description="Pass as page_token for the next page; null on the last page.")


# --- OAuth 2.0 ----------------------------------------------------------------------------


class TokenAnswer(Answer):
    """RFC 6749 §5.1: what /oauth/token answers."""

    access_token: str = Field(description="A JWT (RFC 9068, header typ at+jwt, EdDSA), verifiable with the JWKS.")
    token_type: Literal["Bearer", "DPoP"] = Field(description="DPoP when a DPoP proof bound the token to its key.")
    expires_in: int = Field(ge=1, description="Seconds: the access_token_ttl_seconds setting when issued.")
    scope: str = Field(description="Space-separated; exactly what was asked, or all the client may have. May be empty.")
    refresh_token: str | None = Field(
        default=None,
        pattern=r"^apkr_[0-9A-Za-z]+$",
        description="jwt-bearer, refresh_token and device-code grants only; single use: each refresh answers a new "
        "one.",
    )
    issued_token_type: Literal["urn:ietf:params:oauth:token-type:access_token"] | None = Field(
        default=None, description="Token exchange (RFC 8693) only."
    )


class Act(Answer):
    sub: str = Field(description="The agent acting for the user sub.")


class Introspection(Answer):
    """RFC 7662 §2.2: {"active": false} alone for anything not live; the claims of a live token."""

    active: bool
    scope: str | None = None
    client_id: AgentId | None = None
    sub: str | None = None
    aud: str | None = Field(None, description="Access tokens only.")
    iss: str | None = None
    exp: int | None = None
    iat: int | None = Field(None, description="Access tokens only.")
    jti: str | None = Field(None, description="Access tokens only.")
    token_type: Literal["Bearer", "DPoP", "refresh_token"] | None = Field(
        None, description="Bearer or DPoP (a bound token) for an access token; refresh_token for a refresh token."
    )
    tenant_id: str | None = None
    act: Act | None = Field(None, description="When an agent acts for a user.")


class Revoked(Answer):
    """RFC 7009 §2.2: an empty object, whether or not the token was known."""


class Jwk(Answer):
    kty: Literal["OKP"]
    crv: Literal["Ed25519"]
    x: str = Field(pattern=r"^[A-Za-z0-9_-]{43}$", description="The raw 32-byte public key, base64url.")
    kid: str
    use: Literal["sig"]
    alg: Literal["EdDSA"]


class Jwks(Answer):
    keys: list[Jwk] = Field(description="Every key that may have signed a live access token; the newest signs.")


class ServerMetadata(Answer):
    """RFC 8414 authorization-server metadata."""

    issuer: str
    token_endpoint: str
    jwks_uri: str
    introspection_endpoint: str
    revocation_endpoint: str
    device_authorization_endpoint: str
    grant_types_supported: list[str]
    response_types_supported: list[str]
    token_endpoint_auth_methods_supported: list[str]
    token_endpoint_auth_signing_alg_values_supported: list[str]
    introspection_endpoint_auth_methods_supported: list[str]
    revocation_endpoint_auth_methods_supported: list[str]
    dpop_signing_alg_values_supported: list[str]
    scopes_supported: list[str]


# --- users, their grants, relations ---------------------------------------------------------


class User(Answer):
    user_id: UserId
    firebase_uid: str
    tenant_id: str
    display_name: str | None
    disabled: bool
    created_at: Timestamp


class UserPage(Answer):
    users: list[User]
    next_page_token: str | None = Field(description="Pass as page_token for the next page; null on the last page.")


class UserGrant(Answer):
    grant_id: GrantId = Field(
        description="Names the user and the agent: one grant per pair; granting again replaces it."
    )
    user_id: UserId
    agent_id: AgentId
    actions: list[UserAction]
    created_at: Timestamp
    expires_at: Timestamp


class ListedUserGrant(UserGrant):
    revoked_at: Timestamp | None


class UserGrantList(Answer):
    grants: list[ListedUserGrant]


class RevokedUserGrant(Answer):
    grant_id: GrantId
    revoked_at: Timestamp = Field(description="When the grant was first revoked.")


class RelationsWritten(Answer):
    written: int = Field(description="Tuples that did not exist and now do.")
    deleted: int = Field(description="Tuples that existed and no longer do.")


class RelationTuple(Answer):
    resource: str
    relation: Literal["owner", "editor", "viewer"]
    subject: str


class RelationTuples(Answer):
    tuples: list[RelationTuple]


class Allowed(Answer):
    allowed: bool


# --- device authorization (RFC 8628) --------------------------------------------------------


class DeviceAuthorization(Answer):
    device_code: str = Field(description="For the polling program only: it is the grant.")
    user_code: str = Field(pattern=r"^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$")
    verification_uri: str
    verification_uri_complete: str
    expires_in: int
    interval: int


class ActivationLookup(Answer):
    user_code: str
    agent_id: AgentId
    agent_display_name: str
    tenant_id: str
    actions: list[str]
    expires_at: Timestamp


class ActivationDecision(Answer):
    user_code: str
    approved: bool


# --- the OpenAPI document itself ------------------------------------------------------------


class OpenApiDocument(Answer):
    openapi: Literal["3.1.0"]
    info: dict[str, Any]
    paths: dict[str, Any]
    components: dict[str, Any]


class LeakReport(Answer):
    """The same for every report, whatever the keys were: it says nothing of which were real."""

    received: int = Field(ge=1, le=100, description="How many keys the request presented.")
