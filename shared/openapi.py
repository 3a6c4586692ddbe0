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
    devices,
    schema,
    secrets,
    settings,
)

VERSION = "0.1.0"
REF = "#/components/schemas/{model}"

# Security schemes, by the names the document gives them.
BRIDGE = "bridgeKey"
DEVICE = "deviceKey"
CAPABILITY = "capabilityToken"
DELEGATION = "delegation"
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
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
}

Security = tuple[tuple[str, ...], ...]  # alternatives; each lists the schemes sent together
BRIDGE_ONLY: Security = ((BRIDGE,),)
ANY_CREDENTIAL: Security = ((BRIDGE,), (DEVICE,), (CAPABILITY,))
MINTING: Security = ((BRIDGE,), (DEVICE,))
AGENT: Security = ((DEVICE,), (CAPABILITY,))
AGENT_OR_DELEGATE: Security = ((DEVICE,), (CAPABILITY,), (DEVICE, DELEGATION), (CAPABILITY, DELEGATION))

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
    "forbidden: a capability token whose scope lacks this route, or a delegation (delegations cover "
    "the secrets routes only)"
)


@dataclass(frozen=True)
class Route:
    path: str  # as served, without the leading slash: agents/create
    summary: str
    callers: str
    request: type[schema.Body] | None
    status: int
    answer: type[answers.Answer]
    security: Security
    errors: Mapping[int, str] = field(default_factory=dict)  # the route's own, beside COMMON_ERRORS
    method: str = "POST"

    @property
    def operation_id(self) -> str:
        """The name of the function serving the route (its folder under functions/)."""
        return re.sub(r"[/.]", "_", self.path)

    @property
    def tag(self) -> str:
        return self.path.split("/")[0]


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
        {403: NOT_THIS_CREDENTIAL + ", or an agent credential.", 404: "not_found: no such agent."},
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
            403: "forbidden: a capability token, a delegation, or a device key already replaced by rotation.",
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
            403: "forbidden: a capability token, a delegation, or a device key already replaced by rotation.",
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
        "delegate",
        "Let another agent of the caller's tenant act for the caller on some secrets routes, for a while.",
        "An agent's current device key (the caller is the grantor).",
        delegations.Grant,
        201,
        answers.Delegation,
        ((DEVICE,),),
        {
            403: "forbidden: the bridge key, a capability token, a delegation, "
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
            403: "forbidden: a capability token, a delegation, or a device key already replaced by rotation.",
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
        {403: "forbidden: the bridge key, a capability token or delegation that does not name this route."},
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
            403: "forbidden: the bridge key, a capability token or delegation that does not name this route.",
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
        {403: "forbidden: the bridge key, a capability token or delegation that does not name this route."},
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
            403: "forbidden: the bridge key, a capability token or delegation that does not name this route.",
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


def _request_name(path: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[/._]", path)) + "Request"


def _error_responses(route: Route) -> dict[str, Any]:
    if route.method == "POST":
        described = {**COMMON_ERRORS, **route.errors}
    else:  # no body and no credential: only the method can be wrong
        described = {405: f"method_not_allowed: the route answers {route.method} only.", 500: COMMON_ERRORS[500]}
    responses: dict[str, Any] = {}
    for status in sorted(described):
        headers: dict[str, Any] = {"x-request-id": {"$ref": "#/components/headers/RequestId"}}
        if status == 405:
            headers["Allow"] = {
                "description": "The one method the route answers.",
                "schema": {"type": "string", "const": route.method},
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
    if route.request is not None:
        operation["requestBody"] = {
            "required": False,
            "description": "A JSON object; an empty body counts as {}.",
            "content": {"application/json": {"schema": _schema(route.request, schemas, _request_name(route.path))}},
        }
    operation["responses"] = {
        str(route.status): {
            "description": "Done.",
            "headers": {
                "x-request-id": {"$ref": "#/components/headers/RequestId"},
                "Cache-Control": {"$ref": "#/components/headers/CacheControl"},
            },
            "content": {"application/json": {"schema": _schema(route.answer, schemas)}},
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
            "summary": "Agents, device keys, delegations, secrets, settings, capability tokens and audit.",
            "description": "Every route but this document's is POST with a strict JSON object body and answers "
            "JSON. Errors are {error, error_description}. Every answer carries x-request-id and "
            "Cache-Control: no-store.",
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
                "CacheControl": {"description": "Always no-store.", "schema": {"type": "string", "const": "no-store"}},
            },
        },
    }


@functools.cache
def _built() -> dict[str, Any]:
    return build()


def document() -> dict[str, Any]:
    """The document, built on first use and kept; a copy, so no caller can change the kept one."""
    return copy.deepcopy(_built())
