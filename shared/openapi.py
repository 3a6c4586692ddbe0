"""The OpenAPI 3.1 description of every route, generated from the request and answer models.

``ROUTES`` is the one table of what each route takes, answers and refuses; ``document()``
turns it into the document ``GET /openapi.json`` serves. Schemas come from pydantic
(``model_json_schema``, draft 2020-12, as OpenAPI 3.1 uses); the rules a request model
checks in an ``AfterValidator`` (ID, tenant and secret-name patterns) are added to the
schema by ``_Generator``, which refuses a validator it does not know, so the document
never silently describes a looser body than the code accepts.

Nothing here runs at import time: the document is built on the first request and kept.
"""

from __future__ import annotations

import copy
import functools
import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from shared import (
    agents,
    answers,
    audit,
    capabilities,
    delegations,
    device_flow,
    devices,
    http,
    leaks,
    oauth,
    relations,
    schema,
    secrets,
    settings,
    user_grants,
    users,
)

VERSION = "0.1.0"
REF = "#/components/schemas/{model}"

# Security schemes, by the names the document gives them.
BRIDGE = "bridgeKey"
DEVICE = "deviceKey"
CAPABILITY = "capabilityToken"
DELEGATION = "delegation"
ACCESS_TOKEN = "accessToken"  # noqa: S105 - a scheme name
DPOP_TOKEN = "dpopAccessToken"  # noqa: S105 - a scheme name
DPOP_PROOF = "dpopProof"
CLIENT_BASIC = "clientBasic"
USER = "firebaseIdToken"
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    USER: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A Firebase Authentication ID token of a user registered here (users/create): verified with "
        "firebase-admin, then one read of the user. An account not registered here, or a disabled user: 401.",
    },
    BRIDGE: {
        "type": "apiKey",
        "in": "header",
        "name": "x-agentpack-key",
        "description": "The project bridge key (apkb_…): operators and trusted back-end services.",
    },
    DEVICE: {
        "type": "apiKey",
        "in": "header",
        "name": "x-agentpack-device-key",
        "description": "A device key (apkd_…): one agent, on one install. The agent is the key's own.",
    },
    CAPABILITY: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A capability token (EdDSA JWS, typ agentpack-cap+jwt): one agent, for the routes in its scope.",
    },
    DELEGATION: {
        "type": "apiKey",
        "in": "header",
        "name": "x-agentpack-delegation",
        "description": "A delegation ID (dlg_…), beside the grantee's device key or capability token: "
        "the request acts for the grantor, on the secrets routes the delegation names.",
    },
    ACCESS_TOKEN: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An OAuth access token of this issuer (RFC 9068: EdDSA JWS, typ at+jwt, from /oauth/token), "
        "with aud = the issuer: one agent, for the routes its scope names. Checked live: revoking the token, its "
        "key or its refresh family, or disabling its agent, refuses it from the next request. Never accepted by "
        "the routes that mint or revoke credentials.",
    },
    DPOP_TOKEN: {
        "type": "http",
        "scheme": "DPoP",
        "description": "A DPoP-bound access token (RFC 9449; a JWT as accessToken's, token_type DPoP, claim cnf.jkt), "
        "sent as "
        "Authorization: DPoP <token> with a fresh proof of its key in the DPoP header.",
    },
    DPOP_PROOF: {
        "type": "apiKey",
        "in": "header",
        "name": "DPoP",
        "description": "A DPoP proof (typ dpop+jwt, EdDSA, the public key in its jwk header) for this request: "
        "htm POST, htu = the issuer + the route's path, iat within 60 s, ath = the token's SHA-256, a jti used once.",
    },
    CLIENT_BASIC: {
        "type": "http",
        "scheme": "basic",
        "description": "OAuth client authentication client_secret_basic: the agent_id as user name, one of its "
        "live device keys as password (each form-urlencoded). The OAuth endpoints also take client_secret_post, "
        "private_key_jwt (client_assertion) and, for a public agent, client_id alone, in the form body.",
    },
}

Security = tuple[tuple[str, ...], ...]  # alternatives; each lists the schemes sent together
BRIDGE_ONLY: Security = ((BRIDGE,),)
ACCESS: Security = ((ACCESS_TOKEN,), (DPOP_TOKEN, DPOP_PROOF))  # an OAuth access token, bearer or DPoP-bound
ANY_CREDENTIAL: Security = ((BRIDGE,), (DEVICE,), (CAPABILITY,), *ACCESS)
MINTING: Security = ((BRIDGE,), (DEVICE,))
AGENT: Security = ((DEVICE,), (CAPABILITY,), *ACCESS)
AGENT_OR_DELEGATE: Security = (
    (DEVICE,),
    (CAPABILITY,),
    *ACCESS,
    (DEVICE, DELEGATION),
    (CAPABILITY, DELEGATION),
)
# The OAuth endpoints: HTTP Basic, or the client's authentication in the form body (the empty requirement).
CLIENT: Security = ((CLIENT_BASIC,), ())

# What every POST route may answer, whatever it does.
COMMON_ERRORS: dict[int, str] = {
    400: "invalid_request: the body is not a strict JSON object of this route's model (the field is named), "
    "or ambiguous_credentials: more than one primary credential.",
    401: "unauthenticated: no valid credential (missing, malformed, unknown, expired, revoked, or its agent disabled).",
    405: "method_not_allowed: the route answers POST only.",
    413: "payload_too_large: the body is over 64 KiB.",
    415: "unsupported_media_type: a body that is not application/json (UTF-8).",
    500: "internal: a bug; no detail is given.",
    503: "unavailable: the datastore or secret store cannot be reached, or the deployment is misconfigured; "
    "nothing was half-written.",
}
NOT_THIS_CREDENTIAL = (
    "forbidden: a capability token or access token whose scope lacks this route, or a delegation (delegations "
    "cover the secrets routes only)"
)
MINTING_REFUSED = (
    "forbidden: a capability token, an access token, a delegation, or a device key already replaced by rotation."
)
# What every OAuth endpoint may answer (RFC 6749 §5.2), beside the transport errors of COMMON_ERRORS.
OAUTH_ERRORS: dict[int, str] = {
    400: "invalid_request: a required parameter is missing, a parameter is sent twice, or more than one client "
    "authentication method is used (the error shape is RFC 6749 §5.2's).",
    401: "invalid_client: client authentication failed (unknown or disabled agent; wrong, revoked, expired or "
    "rotated-out key; a key of another agent; a bad or replayed client_assertion): one answer for all, with "
    "WWW-Authenticate: Basic when the client used HTTP Basic.",
    405: "method_not_allowed: the endpoint answers POST only.",
    413: COMMON_ERRORS[413],
    415: "unsupported_media_type: a body that is not application/x-www-form-urlencoded.",
    500: COMMON_ERRORS[500],
    503: COMMON_ERRORS[503],
}
FORM_PARAMETERS: dict[str, str] = {
    "client_id": "The client's agent_id (client_secret_post, a public agent; optional with HTTP Basic or an "
    "assertion, and then it must match).",
    "client_secret": "client_secret_post: one of the agent's live device keys.",
    "client_assertion_type": "private_key_jwt: urn:ietf:params:oauth:client-assertion-type:jwt-bearer.",
    "client_assertion": "private_key_jwt (RFC 7523 §2.2): an EdDSA JWT signed by a key pair registered with "
    "device/issue public_key; kid = that key ID; iss = sub = the agent; aud = the endpoint URL or the issuer; "
    "exp at most 3600 s ahead; jti used once.",
    "grant_type": "client_credentials, urn:ietf:params:oauth:grant-type:jwt-bearer, refresh_token, "
    "urn:ietf:params:oauth:grant-type:token-exchange or urn:ietf:params:oauth:grant-type:device_code; "
    "anything else is unsupported_grant_type.",
    "scope": "Space-separated scopes; default: all the client may have now. More than that is invalid_scope, "
    "never narrowed in silence.",
    "resource": "RFC 8707: the token's audience, an absolute https URI (or http on a loopback host); "
    "default the issuer. Anything else is invalid_target.",
    "refresh_token": "The refresh_token grant: the refresh token (apkr_…) to spend.",
    "assertion": "The jwt-bearer grant (RFC 7523 §2.1): a JWT as for private_key_jwt, and no other client "
    "authentication.",
    "token": "The token (an access token or a refresh token).",
    "token_type_hint": "access_token or refresh_token; ignored (the token's form says which it is).",
    "subject_token": "Token exchange (RFC 8693): the user's token to act for, a Firebase ID token.",
    "subject_token_type": "urn:ietf:params:oauth:token-type:id_token (or …:access_token, which no token of this "
    "service qualifies for today: every user token it issues already carries act).",
    "device_code": "The device-code grant (RFC 8628 §3.4): the device code /oauth/device_authorization answered.",
}


@dataclass(frozen=True)
class Route:
    path: str  # as served, without the leading slash: agents/create
    summary: str
    callers: str
    request: type[schema.Body] | type[schema.Form] | None
    status: int
    answer: type[answers.Answer] | tuple[str, ...]  # a JSON model, or the media types of a page or file
    security: Security
    errors: Mapping[int, str] = field(default_factory=dict)  # the route's own, beside COMMON_ERRORS
    method: str = "POST"
    media: str = "application/json"  # of the request body
    cache_control: str = "no-store"

    @property
    def operation_id(self) -> str:
        """The name of the function serving the route (its folder under functions/): leading dots
        stripped, ``/``, ``.`` and ``-`` turned into ``_`` (``.well-known/jwks.json``: ``well_known_jwks_json``)."""
        return re.sub(r"[/.\-]", "_", self.path.lstrip("."))

    @property
    def tag(self) -> str:
        return "oauth" if self.is_oauth else self.path.split("/")[0]

    @property
    def is_oauth(self) -> bool:
        """The OAuth 2.0 endpoints and discovery documents, with their own error codes and conventions."""
        return self.path.startswith(("oauth/", ".well-known/"))


ROUTES: tuple[Route, ...] = (
    Route(
        "agents/create",
        "Create an agent.",
        "The bridge key.",
        agents.CreateAgent,
        201,
        answers.Agent,
        BRIDGE_ONLY,
        {403: NOT_THIS_CREDENTIAL + ", or an agent credential."},
    ),
    Route(
        "agents/get",
        "Read one agent.",
        "The bridge key, for any agent (agent_id required); an agent, for itself (agent_id ignored).",
        agents.GetAgent,
        200,
        answers.Agent,
        ANY_CREDENTIAL,
        {403: NOT_THIS_CREDENTIAL + ".", 404: "not_found: no such agent (or not one of ours)."},
    ),
    Route(
        "agents/list",
        "List agents in ID order, page by page, of every tenant or of one.",
        "The bridge key.",
        agents.ListAgents,
        200,
        answers.AgentPage,
        BRIDGE_ONLY,
        {403: NOT_THIS_CREDENTIAL + ", or an agent credential."},
    ),
    Route(
        "agents/update",
        "Rename, disable or re-enable an agent.",
        "The bridge key.",
        agents.UpdateAgent,
        200,
        answers.Agent,
        BRIDGE_ONLY,
        {
            403: NOT_THIS_CREDENTIAL + ", or an agent credential.",
            404: "not_found: no such agent.",
            409: "conflict: public: true for an agent that still holds live device keys.",
        },
    ),
    Route(
        "device/issue",
        "Issue a device key, or rotate one (replaces_key_id). The key is in this answer only.",
        "The bridge key, for any agent (agent_id required); an agent's current device key, for itself.",
        devices.IssueKey,
        201,
        answers.IssuedKey,
        MINTING,
        {
            403: MINTING_REFUSED,
            404: "not_found: no such agent, or replaces_key_id is not a key of this agent.",
            409: "conflict: the agent has device_key_max_active live keys, "
            "or the key to replace is already revoked, expired or replaced.",
        },
    ),
    Route(
        "device/revoke",
        "Revoke a device key. Revoking it again answers the first revoked_at.",
        "The bridge key, for any key; an agent's current device key, for the agent's own keys.",
        devices.RevokeKey,
        200,
        answers.RevokedKey,
        MINTING,
        {
            403: MINTING_REFUSED,
            404: "not_found: no such key, or another agent's.",
        },
    ),
    Route(
        "device/list",
        "List an agent's device keys (never the keys themselves), oldest first.",
        "The bridge key, for any agent (agent_id required); an agent, for itself (agent_id ignored).",
        devices.ListKeys,
        200,
        answers.DeviceKeyList,
        ANY_CREDENTIAL,
        {403: NOT_THIS_CREDENTIAL + ".", 404: "not_found: no such agent (bridge key)."},
    ),
    Route(
        "keys/report-leak",
        "Report leaked keys (apkd_, apkr_, apkb_): each live device key is revoked, each live refresh token "
        "revokes its family, a live bridge key is reported; one key.leak_reported event each (actor public). "
        "The answer is the same whichever keys were real.",
        "Anyone: no credential (credential headers are ignored). At most 60 requests an hour per client address.",
        leaks.ReportLeak,
        200,
        answers.LeakReport,
        (),
        {
            400: "invalid_request: not {keys: [...]} with 1 to 100 strings (each at most 256 characters).",
            429: "rate_limited: more than 60 requests in the last hour from this client address (counted in "
            "5-minute steps); Retry-After says in how many seconds one more is counted. Nothing was done.",
        },
    ),
    Route(
        "delegate",
        "Let another agent of the caller's tenant act for the caller on some secrets routes, for a while.",
        "An agent's current device key (the caller is the grantor).",
        delegations.Grant,
        201,
        answers.Delegation,
        ((DEVICE,),),
        {
            403: "forbidden: the bridge key, a capability token, an access token, a delegation, "
            "or a device key already replaced by rotation.",
            404: "not_found: to_agent does not exist, or is of another tenant.",
        },
    ),
    Route(
        "delegate/revoke",
        "End a delegation. Revoking it again answers the first revoked_at.",
        "The bridge key; the grantor's or the grantee's current device key.",
        delegations.Revoke,
        200,
        answers.RevokedDelegation,
        MINTING,
        {
            403: MINTING_REFUSED,
            404: "not_found: no such delegation, or one the caller is no party to.",
        },
    ),
    Route(
        "delegate/list",
        "The delegations the calling agent granted and received.",
        "An agent.",
        delegations.ListDelegations,
        200,
        answers.DelegationLists,
        AGENT,
        {403: NOT_THIS_CREDENTIAL + ", or the bridge key."},
    ),
    Route(
        "secrets/put",
        "Store a new version of one of the agent's secrets.",
        "An agent, or its delegate (never the bridge key).",
        secrets.Put,
        200,
        answers.SecretVersion,
        AGENT_OR_DELEGATE,
        {
            403: "forbidden: the bridge key, a capability token, access token or delegation that does not name "
            "this route."
        },
    ),
    Route(
        "secrets/get",
        "Read one of the agent's secrets, with its value.",
        "An agent, or its delegate (never the bridge key).",
        secrets.Get,
        200,
        answers.SecretValue,
        AGENT_OR_DELEGATE,
        {
            403: "forbidden: the bridge key, a capability token, access token or delegation that does not name "
            "this route.",
            404: "not_found: no secret of that name.",
        },
    ),
    Route(
        "secrets/list",
        "The names and versions of the agent's secrets, never their values.",
        "An agent, or its delegate (never the bridge key).",
        secrets.ListSecrets,
        200,
        answers.SecretList,
        AGENT_OR_DELEGATE,
        {
            403: "forbidden: the bridge key, a capability token, access token or delegation that does not name "
            "this route."
        },
    ),
    Route(
        "secrets/delete",
        "Delete one of the agent's secrets (all its versions).",
        "An agent, or its delegate (never the bridge key).",
        secrets.Delete,
        200,
        answers.SecretDeleted,
        AGENT_OR_DELEGATE,
        {
            403: "forbidden: the bridge key, a capability token, access token or delegation that does not name "
            "this route.",
            404: "not_found: no secret of that name.",
        },
    ),
    Route(
        "settings/list",
        "Every allow-listed setting with its current or default value.",
        "Any valid credential.",
        settings.ListSettings,
        200,
        answers.SettingList,
        ANY_CREDENTIAL,
        {403: NOT_THIS_CREDENTIAL + "."},
    ),
    Route(
        "settings/set",
        "Change one allow-listed setting; it applies from the next request.",
        "The bridge key.",
        settings.SetSetting,
        200,
        answers.SettingChanged,
        BRIDGE_ONLY,
        {403: NOT_THIS_CREDENTIAL + ", or an agent credential."},
    ),
    Route(
        "capability/record",
        "Record the claims of an offline-minted capability token (never the token).",
        "The bridge key.",
        capabilities.Record,
        201,
        answers.CapabilityRecorded,
        BRIDGE_ONLY,
        {
            403: NOT_THIS_CREDENTIAL + ", or an agent credential.",
            404: "not_found: sub is not an existing agent.",
            409: "conflict: a token with this jti is already recorded.",
        },
    ),
    Route(
        "audit/list",
        "Audit events, newest first, page by page.",
        "The bridge key.",
        audit.ListEvents,
        200,
        answers.AuditPage,
        BRIDGE_ONLY,
        {403: NOT_THIS_CREDENTIAL + ", or an agent credential."},
    ),
    Route(
        "openapi.json",
        "This document: the OpenAPI 3.1 description of every route.",
        "Anyone: no credential.",
        None,
        200,
        answers.OpenApiDocument,
        (),
        method="GET",
    ),
    Route(
        "oauth/token",
        "OAuth 2.0 token endpoint (RFC 6749 §3.2): the client_credentials, jwt-bearer (RFC 7523) and "
        "refresh_token grants.",
        "A client: an agent authenticated with client_secret_basic, client_secret_post (the secret is one of its "
        "device keys) or private_key_jwt; a public agent sends client_id alone (refresh_token grant only); the "
        "jwt-bearer grant's assertion is its own authentication. A DPoP header (RFC 9449) binds the token to a key.",
        oauth.TokenForm,
        200,
        answers.TokenAnswer,
        CLIENT,
        {
            **OAUTH_ERRORS,
            400: OAUTH_ERRORS[400] + " Also invalid_grant (a bad, expired, revoked or spent refresh token, which "
            "revokes its whole family; a bad jwt-bearer assertion), unauthorized_client (a public agent asking for "
            "client_credentials), unsupported_grant_type, invalid_scope (more than the client may have now), "
            "invalid_target (a resource that is not an acceptable audience) and invalid_dpop_proof.",
        },
        media=http.FORM,
    ),
    Route(
        "oauth/introspect",
        "OAuth 2.0 token introspection (RFC 7662): is this access or refresh token live, and its claims.",
        "An agent authenticated as an OAuth client (its own tenant's tokens only), or the bridge key header "
        "(any tenant).",
        oauth.IntrospectForm,
        200,
        answers.Introspection,
        ((CLIENT_BASIC,), (BRIDGE,), ()),
        {**OAUTH_ERRORS, 401: OAUTH_ERRORS[401] + " With the bridge key header: unauthenticated."},
        media=http.FORM,
    ),
    Route(
        "oauth/revoke",
        "OAuth 2.0 token revocation (RFC 7009): an access token, or a refresh token and its whole family.",
        "The client the token was issued to.",
        oauth.RevokeForm,
        200,
        answers.Revoked,
        CLIENT,
        {
            **OAUTH_ERRORS,
            400: OAUTH_ERRORS[400] + " Also unauthorized_client: the token was issued to another client (it "
            "stands). Unknown, invalid and expired tokens answer 200.",
        },
        media=http.FORM,
    ),
    Route(
        ".well-known/jwks.json",
        "The JSON Web Key Set (RFC 7517) of the keys that sign access tokens.",
        "Anyone: no credential. Cacheable for five minutes.",
        None,
        200,
        answers.Jwks,
        (),
        {503: "unavailable: the signing keys are misconfigured."},
        method="GET",
        cache_control="public, max-age=300",
    ),
    Route(
        ".well-known/oauth-authorization-server",
        "The authorization server's metadata (RFC 8414): the issuer, its endpoints and what they support.",
        "Anyone: no credential.",
        None,
        200,
        answers.ServerMetadata,
        (),
        {503: "unavailable: AGENTPACK_ISSUER is misconfigured."},
        method="GET",
    ),
    Route(
        "oauth/device_authorization",
        "Device authorization (RFC 8628 §3.1): a device code for the program, a user code for a person to approve.",
        "A public agent (client_id alone), or a confidential agent authenticated as a client.",
        device_flow.AuthorizationForm,
        200,
        answers.DeviceAuthorization,
        CLIENT,
        {**OAUTH_ERRORS, 400: OAUTH_ERRORS[400] + " Also invalid_scope: actions beyond the agent's scopes."},
        media=http.FORM,
    ),
    Route(
        "activate",
        "The activation page (RFC 8628 §3.3): a person signs in, sees what a user code asks for, and decides.",
        "Anyone: no credential (the page signs the person in with Firebase Authentication). ?user_code= pre-fills "
        "the code. Strict Content-Security-Policy, no inline script, no cookies.",
        None,
        200,
        ("text/html",),
        (),
        method="GET",
    ),
    Route(
        "activate/assets",
        "The activation page's files: ?file=app.js, app.css, firebase-app.js or firebase-auth.js (the Firebase JS "
        "SDK, served from this origin). Any other name: 404.",
        "Anyone: no credential. Cacheable for five minutes.",
        None,
        200,
        ("text/javascript", "text/css"),
        (),
        {404: "not_found: not one of the page's files."},
        method="GET",
        cache_control="public, max-age=300",
    ),
    Route(
        "activate/lookup",
        "What a pending user code asks for: which agent, of which tenant, for which actions.",
        "A signed-in user (Firebase ID token) of the agent's tenant.",
        device_flow.Lookup,
        200,
        answers.ActivationLookup,
        ((USER,),),
        {
            403: "forbidden: a credential other than a user's.",
            404: "not_found: an unknown, expired or already decided code, or one of another tenant's agent.",
            429: "rate_limited: more than five wrong codes in the last minute.",
        },
    ),
    Route(
        "activate/decide",
        "Approve or deny a pending user code: approval makes the agent the user's delegate_of for the actions.",
        "A signed-in user (Firebase ID token) of the agent's tenant.",
        device_flow.Decide,
        200,
        answers.ActivationDecision,
        ((USER,),),
        {
            403: "forbidden: a credential other than a user's.",
            404: "not_found: an unknown, expired or already decided code, or one of another tenant's agent.",
            429: "rate_limited: more than five wrong codes in the last minute.",
        },
    ),
    Route(
        "users/create",
        "Register a Firebase Authentication account as a user of a tenant.",
        "The bridge key.",
        users.CreateUser,
        201,
        answers.User,
        BRIDGE_ONLY,
        {403: "forbidden: any credential but the bridge key.", 409: "conflict: the account is already registered."},
    ),
    Route(
        "users/get",
        "Read one user.",
        "The bridge key (user_id required); a signed-in user, for itself (another user's ID: 404).",
        users.GetUser,
        200,
        answers.User,
        ((BRIDGE,), (USER,)),
        {403: "forbidden: an agent credential.", 404: "not_found: no such user (or not the caller)."},
    ),
    Route(
        "users/list",
        "List users page by page, optionally of one tenant.",
        "The bridge key.",
        users.ListUsers,
        200,
        answers.UserPage,
        BRIDGE_ONLY,
        {403: "forbidden: any credential but the bridge key."},
    ),
    Route(
        "users/update",
        "Rename, disable or re-enable a user. Disabling ends at once its tokens, its grants and every check.",
        "The bridge key.",
        users.UpdateUser,
        200,
        answers.User,
        BRIDGE_ONLY,
        {403: "forbidden: any credential but the bridge key.", 404: "not_found: no such user."},
    ),
    Route(
        "users/delegate",
        "Make an agent of the user's tenant its delegate_of for some actions (granting again replaces the grant).",
        "A signed-in user, for itself; the bridge key, naming user_id.",
        user_grants.Grant,
        201,
        answers.UserGrant,
        ((BRIDGE,), (USER,)),
        {403: "forbidden: an agent credential.", 404: "not_found: no such user or agent, or another tenant's agent."},
    ),
    Route(
        "users/delegate/revoke",
        "End a user's grant to an agent.",
        "The user, the agent (its current device key), or the bridge key.",
        user_grants.Revoke,
        200,
        answers.RevokedUserGrant,
        ((BRIDGE,), (USER,), (DEVICE,)),
        {403: MINTING_REFUSED, 404: "not_found: no such grant, or one the caller is no party to."},
    ),
    Route(
        "users/delegate/list",
        "A user's grants to agents, or the grants an agent holds from users.",
        "A signed-in user; an agent.",
        user_grants.ListGrants,
        200,
        answers.UserGrantList,
        ((USER,), *AGENT),
        {403: "forbidden: the bridge key, or a token whose scope lacks this route."},
    ),
    Route(
        "authz/write",
        "Write and delete relationship tuples, atomically, with one audit event.",
        "The bridge key (naming tenant_id); an agent whose scopes hold authz:write (its own tenant).",
        relations.Write,
        200,
        answers.RelationsWritten,
        ((BRIDGE,), *AGENT),
        {403: "forbidden: the agent's scopes lack authz:write.", 404: "not_found: a subject of another tenant."},
    ),
    Route(
        "authz/read",
        "The relationship tuples of one resource.",
        "The bridge key (naming tenant_id); an agent whose scopes hold authz:read (its own tenant).",
        relations.Read,
        200,
        answers.RelationTuples,
        ((BRIDGE,), *AGENT),
        {403: "forbidden: the agent's scopes lack authz:read."},
    ),
    Route(
        "authz/check",
        "May a subject (or an agent acting for a user) do an action on a resource? One datastore round trip.",
        "The bridge key (naming tenant_id); an agent whose scopes hold authz:check (an access token caller must "
        "hold authz:check itself).",
        relations.Check,
        200,
        answers.Allowed,
        ((BRIDGE,), *AGENT),
        {403: "forbidden: the agent's scopes lack authz:check."},
    ),
)


def route(path: str) -> Route:
    return next(r for r in ROUTES if r.path == path)


# --- what the request models check beyond their JSON Schema types --------------------------

_CONTROL = r"\x00-\x1f\x7f-\x9f"
_VALIDATOR_RULES: dict[Callable[..., Any], dict[str, Any]] = {
    schema._identifier: {
        "pattern": rf"^[^/{_CONTROL}]+$",
        "minLength": 1,
        "maxLength": 128,
        "description": "An ID: 1 to 128 UTF-8 bytes, no '/', no control character.",
    },
    schema._text: {"pattern": rf"^[^{_CONTROL}]*$"},
    schema._tenant: {"pattern": f"^{schema._TENANT.pattern}$"},
    secrets._name: {"pattern": f"^{secrets._NAME.pattern}$"},
    schema._scopes: {
        "items": {"type": "string", "pattern": f"^{schema.SCOPE.pattern}$"},
        "uniqueItems": True,
        "description": "Distinct scope strings (RFC 6749 §3.3).",
    },
    relations._resource: {
        "pattern": r"^[a-z][a-z0-9_]{0,31}:[^/" + _CONTROL + r"]{1,128}$",
        "description": "<type>:<id>: a type of [a-z][a-z0-9_]{0,31}, an ID of 1 to 128 bytes, no '/' nor control.",
    },
    relations._subject: {"pattern": r"^(user:usr_|agent:agt_)[0-9A-Za-z]{22}$"},
    relations._user: {"pattern": r"^user:usr_[0-9A-Za-z]{22}$"},
}


def _rule(function: Callable[..., Any]) -> dict[str, Any]:
    if function in _VALIDATOR_RULES:
        return _VALIDATOR_RULES[function]
    # capabilities._matches(pattern, rule) makes a closure over a compiled fullmatch pattern.
    pattern = inspect.getclosurevars(function).nonlocals.get("pattern")
    if isinstance(pattern, re.Pattern):
        return {"pattern": f"^(?:{pattern.pattern})$"}
    raise LookupError(f"shared.openapi cannot describe the validator {function.__qualname__}: add it to the table")


class _Generator(GenerateJsonSchema):
    def function_after_schema(self, schema: core_schema.AfterValidatorFunctionSchema) -> JsonSchemaValue:
        generated = dict(super().function_after_schema(schema))
        generated.update(_rule(schema["function"]["function"]))
        return generated


def _schema(model: type[BaseModel], schemas: dict[str, Any], name: str | None = None) -> dict[str, str]:
    """Add ``model`` (as ``name``) and the models it uses to ``schemas``; answer a reference to it."""
    generated = model.model_json_schema(ref_template=REF, schema_generator=_Generator, mode="validation")
    definitions = {**generated.pop("$defs", {}), name or model.__name__: generated}
    if name is not None:
        generated["title"] = name
    for key, value in definitions.items():
        if schemas.setdefault(key, value) != value:
            raise ValueError(f"two different schemas are named {key}")
    return {"$ref": REF.format(model=name or model.__name__)}


def _form_schema(model: type[schema.Form], schemas: dict[str, Any], name: str) -> dict[str, str]:
    """A form model as form parameters: each a string (absent rather than null), described."""
    reference = _schema(model, schemas, name)
    generated = schemas[name]
    for parameter, described in generated["properties"].items():
        string = next((option for option in described.get("anyOf", []) if option.get("type") == "string"), None)
        if string is not None:
            described.pop("anyOf")
            described.pop("default", None)
            described.update(string)
        described["description"] = FORM_PARAMETERS[parameter]
    generated["description"] = "Unknown parameters are ignored (RFC 6749 §3.2); a parameter sent twice is refused."
    return reference


def _request_name(path: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[/._]", path)) + "Request"


def _error_responses(route: Route) -> dict[str, Any]:
    if route.method == "POST":
        described = {**COMMON_ERRORS, **route.errors}
        if not route.security:
            del described[401]  # a route that takes no credential refuses none
    else:  # no body and no credential: only the method (or the deployment) can be wrong
        described = {
            405: f"method_not_allowed: the route answers {route.method} only.",
            500: COMMON_ERRORS[500],
            **route.errors,
        }
    responses: dict[str, Any] = {}
    for status in sorted(described):
        headers: dict[str, Any] = {"x-request-id": {"$ref": "#/components/headers/RequestId"}}
        if status == 405:
            headers["Allow"] = {
                "description": "The one method the route answers.",
                "schema": {"type": "string", "const": route.method},
            }
        if status == 429:
            headers["Retry-After"] = {
                "description": "Seconds until a request of this caller is counted again.",
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            }
        responses[str(status)] = {
            "description": described[status],
            "headers": headers,
            "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorBody")}}},
        }
    return responses


def _operation(route: Route, schemas: dict[str, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "description": f"Who may call: {route.callers}",
        "tags": [route.tag],
        "security": [{scheme: [] for scheme in alternative} for alternative in route.security],
    }
    if route.request is not None and issubclass(route.request, schema.Form):
        operation["requestBody"] = {
            "required": True,
            "description": "A form (application/x-www-form-urlencoded, RFC 6749 §3.2).",
            "content": {route.media: {"schema": _form_schema(route.request, schemas, _request_name(route.path))}},
        }
    elif route.request is not None:
        operation["requestBody"] = {
            "required": False,
            "description": "A JSON object; an empty body counts as {}.",
            "content": {route.media: {"schema": _schema(route.request, schemas, _request_name(route.path))}},
        }
    cache_control: dict[str, Any] = (
        {"$ref": "#/components/headers/CacheControl"}
        if route.cache_control == "no-store"
        else {"description": "Cacheable.", "schema": {"type": "string", "const": route.cache_control}}
    )
    operation["responses"] = {
        str(route.status): {
            "description": "Done.",
            "headers": {"x-request-id": {"$ref": "#/components/headers/RequestId"}, "Cache-Control": cache_control},
            "content": (
                {media: {"schema": {"type": "string"}} for media in route.answer}
                if isinstance(route.answer, tuple)
                else {"application/json": {"schema": _schema(route.answer, schemas)}}
            ),
        },
        **_error_responses(route),
    }
    return operation


def build() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    _schema(answers.ErrorBody, schemas)
    paths = {f"/{r.path}": {r.method.lower(): _operation(r, schemas)} for r in ROUTES}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "agentpack identity",
            "version": VERSION,
            "summary": "Agents, device keys, delegations, secrets, settings, capability tokens, audit, "
            "and an OAuth 2.0 authorization server.",
            "description": "Every route but the GET documents (this one, /.well-known/*) is POST and answers "
            "JSON: the identity routes take a strict JSON object body, the /oauth/* endpoints a form "
            "(application/x-www-form-urlencoded). Errors are {error, error_description}. Every answer carries "
            "x-request-id, and Cache-Control: no-store except the JWKS (public, max-age=300).",
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": SECURITY_SCHEMES,
            "headers": {
                "RequestId": {
                    "description": "The caller's x-request-id if it matched [A-Za-z0-9._:-]{1,128}, else a new "
                    "one; the same ID is on every audit event the request wrote.",
                    "schema": {"type": "string"},
                },
                "CacheControl": {"description": "no-store.", "schema": {"type": "string", "const": "no-store"}},
            },
        },
    }


@functools.cache
def _built() -> dict[str, Any]:
    return build()


def document() -> dict[str, Any]:
    """The document, built on first use and kept; a copy, so no caller can change the kept one."""
    return copy.deepcopy(_built())
