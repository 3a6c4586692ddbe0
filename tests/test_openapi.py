"""The OpenAPI document: it describes exactly the served routes, is valid OpenAPI 3.1, names the
request model each function really parses, and every real answer fits its answer model and schema.
Also the docs: every relative link resolves, nothing points outside the repository, the reference
names every route, setting and audit action, and the documented key patterns find real keys."""

from __future__ import annotations

import ast
import base64
import importlib
import json
import re
import secrets
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from pydantic import BaseModel, ValidationError
from werkzeug.test import Client

from scripts.functions_index import all_functions
from shared import allowlist, answers, audit, clock, config, crypto, delegations, dpop, jws, openapi, schema, tokens
from tests.conftest import BRIDGE_KEY, ROOT, Api, forged_device_key, function_client

DEV_SEED = base64.urlsafe_b64decode((ROOT / "emulator-config/dev-capability-signing.key").read_text().strip() + "=")
SERVED = {function.route: function for function in all_functions()}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi.document()


# --- coverage and structure -----------------------------------------------------------------


def test_the_document_describes_every_served_route_and_nothing_else(document: dict[str, Any]) -> None:
    assert {route.path for route in openapi.ROUTES} == set(SERVED)
    assert set(document["paths"]) == {"/" + route for route in SERVED}
    for route, function in SERVED.items():
        operations = document["paths"]["/" + route]
        assert list(operations) == [function.method.lower()], route
        assert operations[function.method.lower()]["operationId"] == function.name


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    validate(document)  # openapi-spec-validator, OpenAPI 3.1 schema and every $ref
    for operations in document["paths"].values():
        for operation in operations.values():
            for requirement in operation["security"]:
                assert set(requirement) <= set(document["components"]["securitySchemes"])


def test_each_caller_gets_its_own_copy() -> None:
    document = openapi.document()
    document["paths"].clear()
    assert openapi.document()["paths"], "a caller changed the kept document"
    assert json.loads(json.dumps(openapi.document())) == openapi.document()  # plain JSON


def test_validators_the_generator_does_not_know_are_refused() -> None:
    from typing import Annotated

    from pydantic import AfterValidator

    from shared import schema

    class Odd(schema.Body):
        field: Annotated[str, AfterValidator(lambda value: value)]

    with pytest.raises(LookupError):
        openapi._schema(Odd, {})


def test_literals_repeat_the_domain_lists() -> None:
    assert answers.DelegableRoute.__args__ == delegations.DELEGABLE_ROUTES  # type: ignore[attr-defined]
    assert answers.AuditAction.__args__ == audit.ACTIONS  # type: ignore[attr-defined]
    assert set(answers.SettingValues.model_fields) == set(allowlist.ALLOW_LIST)


def _parsed_models(source: Path) -> set[str]:
    """``module.Model`` for every ``call.body(module.Model)``, ``call.peek(...)`` and ``call.form(...)``."""
    found = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("body", "peek", "form")
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "call"
        ):
            (argument,) = node.args
            assert isinstance(argument, ast.Attribute) and isinstance(argument.value, ast.Name), ast.dump(argument)
            found.add(f"{argument.value.id}.{argument.attr}")
    return found


@pytest.mark.parametrize("route", openapi.ROUTES, ids=lambda route: route.path)
def test_the_request_schema_is_the_model_the_function_parses(route: openapi.Route, document: dict[str, Any]) -> None:
    parsed = _parsed_models(SERVED[route.path].source)
    operation = document["paths"]["/" + route.path][route.method.lower()]
    if route.request is None:
        assert parsed == set()
        assert "requestBody" not in operation
        return
    (name,) = parsed
    module, model = name.split(".")
    assert getattr(importlib.import_module(f"shared.{module}"), model) is route.request
    assert list(operation["requestBody"]["content"]) == [route.media]
    reference = operation["requestBody"]["content"][route.media]["schema"]["$ref"]
    properties = document["components"]["schemas"][reference.rsplit("/", 1)[1]]["properties"]
    assert set(properties) == set(route.request.model_fields)
    is_form = route.media == "application/x-www-form-urlencoded"
    assert is_form == issubclass(route.request, schema.Form) == route.path.startswith("oauth/")
    if is_form:  # form parameters are strings, never null, each described
        assert all(p["type"] == "string" and p["description"] for p in properties.values()), properties


def test_operation_ids_are_the_function_folders() -> None:
    assert openapi.route(".well-known/jwks.json").operation_id == "well_known_jwks_json"
    assert openapi.route(".well-known/oauth-authorization-server").operation_id == (
        "well_known_oauth_authorization_server"
    )
    assert openapi.route("oauth/token").operation_id == "oauth_token"
    assert openapi.route("openapi.json").operation_id == "openapi_json"


# --- real answers ---------------------------------------------------------------------------


def _token(agent_id: str, scopes: list[str]) -> str:
    return tokens.mint(DEV_SEED, "dev-1", agent_id, scopes, 300, clock.now())


def _form(name: str, data: dict[str, str], headers: dict[str, str] | None = None) -> Any:
    """POST a form to the function ``name`` (an OAuth endpoint)."""
    return function_client(name).post("/", data=data, headers={**FORM, **(headers or {})})


def _basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def _assertion(seed: bytes, key_id: str, agent_id: str, audience: str) -> str:
    """A client assertion (RFC 7523) signed by a registered key pair."""
    now = int(time.time())
    claims = {"iss": agent_id, "sub": agent_id, "aud": audience, "iat": now, "exp": now + 300}
    return jws.sign(seed, {"alg": "EdDSA", "typ": "JWT", "kid": key_id}, {**claims, "jti": secrets.token_hex(8)})


def _proof(seed: bytes, url: str, access_token: str | None = None) -> str:
    """A DPoP proof (RFC 9449) for POST ``url``, by the key of ``seed``."""
    claims: dict[str, Any] = {"jti": secrets.token_hex(8), "htm": "POST", "htu": url, "iat": int(time.time())}
    if access_token is not None:
        claims["ath"] = dpop.token_hash(access_token)
    header = {"typ": "dpop+jwt", "alg": "EdDSA", "jwk": jws.okp_jwk(crypto.public_key_of(seed))}
    return jws.sign(seed, header, claims)


def _dpop(seed: bytes, token: str, route: str) -> dict[str, str]:
    """The headers of a DPoP-bound access token on one of our routes."""
    return {"authorization": "DPoP " + token, "DPoP": _proof(seed, f"{config.issuer()}/{route}", token)}


def _oauth_calls(api: Api) -> Iterator[tuple[str, Any]]:
    """Every OAuth endpoint and grant, and access tokens (Bearer and DPoP) on our own routes."""
    issuer = config.issuer()
    routes = ["secrets/put", "secrets/list", "agents/get", "device/list", "delegate/list", "settings/list"]
    created = api.bridge("agents/create", {"display_name": "carol", "scopes": [*routes, "read:users"]})
    yield "agents/create", created
    carol = created.get_json()["agent_id"]
    yield "agents/update", api.bridge("agents/update", {"agent_id": carol, "scopes": [*routes, "read:reports"]})
    narrowed = api.bridge("device/issue", {"agent_id": carol, "scopes": ["secrets/list", "read:reports"]})
    yield "device/issue", narrowed
    carol_key = api.new_key(carol)["device_key"]
    seed, public = crypto.new_signing_key()
    pair = api.bridge("device/issue", {"agent_id": carol, "public_key": jws.b64encode(public), "label": "ci"})
    yield "device/issue", pair
    pair_id = pair.get_json()["key_id"]
    yield "device/list", api.bridge("device/list", {"agent_id": carol})

    # client_credentials, with each client authentication method
    basic = _form("oauth_token", {"grant_type": "client_credentials"}, _basic(carol, carol_key))
    yield "oauth/token", basic
    yield (
        "oauth/token",
        _form(
            "oauth_token",
            {
                "grant_type": "client_credentials",
                "client_id": carol,
                "client_secret": narrowed.get_json()["device_key"],
                "scope": "read:reports",
                "resource": "https://reports.example.com",
            },
        ),
    )
    yield (
        "oauth/token",
        _form(
            "oauth_token",
            {
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": _assertion(seed, pair_id, carol, issuer + "/oauth/token"),
                "scope": "secrets/list",
            },
        ),
    )
    # jwt-bearer (a refresh token too), then refresh, DPoP-bound
    dpop_seed = crypto.new_signing_key()[0]
    login = _form(
        "oauth_token",
        {"grant_type": JWT_BEARER, "assertion": _assertion(seed, pair_id, carol, issuer)},
        {"DPoP": _proof(dpop_seed, issuer + "/oauth/token")},
    )
    yield "oauth/token", login
    refreshed = _form(
        "oauth_token",
        {
            "grant_type": "refresh_token",
            "refresh_token": login.get_json()["refresh_token"],
            "scope": "secrets/list secrets/put",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": _assertion(seed, pair_id, carol, issuer),
        },
        {"DPoP": _proof(dpop_seed, issuer + "/oauth/token")},
    )
    yield "oauth/token", refreshed
    bound = refreshed.get_json()["access_token"]
    yield "secrets/put", api.call("secrets/put", {"name": "n", "value": "v"}, _dpop(dpop_seed, bound, "secrets/put"))
    yield "secrets/list", api.call("secrets/list", {}, _dpop(dpop_seed, bound, "secrets/list"))

    # a bearer access token on every route it reaches
    bearer = {"authorization": "Bearer " + basic.get_json()["access_token"]}
    for route in ("agents/get", "device/list", "delegate/list", "settings/list", "secrets/list"):
        yield route, api.call(route, {}, bearer)

    # introspection: by the client, by the bridge key; a refresh token; an inactive token
    for token in (basic.get_json()["access_token"], bound, refreshed.get_json()["refresh_token"], "not-a-token"):
        yield "oauth/introspect", _form("oauth_introspect", {"token": token}, _basic(carol, carol_key))
    yield "oauth/introspect", _form("oauth_introspect", {"token": bound}, {"x-agentpack-key": BRIDGE_KEY})

    # revocation: an access token, a refresh token (its family), an unknown token
    secret = {"client_id": carol, "client_secret": carol_key}
    yield "oauth/revoke", _form("oauth_revoke", {"token": basic.get_json()["access_token"], **secret})
    yield "oauth/revoke", _form("oauth_revoke", {"token": "whatever", **secret})
    other = _form("oauth_token", {"grant_type": JWT_BEARER, "assertion": _assertion(seed, pair_id, carol, issuer)})
    yield "oauth/revoke", _form("oauth_revoke", {"token": other.get_json()["refresh_token"], **secret})
    # a spent refresh token used again: the family is revoked and audited (token.reuse_detected)
    again = _form(
        "oauth_token",
        {"grant_type": "refresh_token", "refresh_token": login.get_json()["refresh_token"], **secret},
        {"DPoP": _proof(dpop_seed, issuer + "/oauth/token")},
    )
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_grant", again.get_json()

    yield ".well-known/jwks.json", function_client("well_known_jwks_json").get("/")
    yield ".well-known/oauth-authorization-server", function_client("well_known_oauth_authorization_server").get("/")


def _signed_up(auth_host: str, email: str) -> tuple[str, str]:
    """A new Firebase account in the Auth emulator: its UID and an ID token."""
    request = urllib.request.Request(
        f"http://{auth_host}/identitytoolkit.googleapis.com/v1/accounts:signUp?key=any",
        data=json.dumps({"email": email, "password": "secret-1234", "returnSecureToken": True}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        made = json.loads(answer.read())
    return str(made["localId"]), str(made["idToken"])


def _people_calls(api: Api, auth_host: str) -> Iterator[tuple[str, Any]]:
    """Users, their grants, relations and checks, token exchange and the device flow."""
    uid, id_token = _signed_up(auth_host, "ann@example.com")
    person = {"Authorization": "Bearer " + id_token}
    created = api.bridge("users/create", {"firebase_uid": uid, "display_name": "Ann"})
    yield "users/create", created
    user_id = created.get_json()["user_id"]
    yield "users/get", api.call("users/get", {}, person)
    yield "users/get", api.bridge("users/get", {"user_id": user_id})
    yield "users/list", api.bridge("users/list", {})
    yield "users/update", api.bridge("users/update", {"user_id": user_id, "display_name": "Ann B."})
    scopes = ["authz:check", "authz:write", "authz:read", "read", "write"]
    agent = api.bridge("agents/create", {"display_name": "helper", "scopes": scopes}).get_json()["agent_id"]
    key = api.new_key(agent)["device_key"]
    granted = api.call("users/delegate", {"agent_id": agent, "actions": ["read"]}, person)
    yield "users/delegate", granted
    yield "users/delegate/list", api.call("users/delegate/list", {}, person)
    yield "users/delegate/list", api.device(key, "users/delegate/list", {})
    tuple_ = {"resource": "doc:42", "relation": "owner", "subject": f"user:{user_id}"}
    yield "authz/write", api.device(key, "authz/write", {"writes": [tuple_]})
    yield "authz/read", api.bridge("authz/read", {"tenant_id": "default", "resource": "doc:42"})
    question = {"subject": f"agent:{agent}", "on_behalf_of": f"user:{user_id}", "action": "read", "resource": "doc:42"}
    yield "authz/check", api.device(key, "authz/check", question)
    exchange = {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": id_token,
        "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
        "client_id": agent,
        "client_secret": key,
    }
    exchanged = _form("oauth_token", exchange)
    yield "oauth/token", exchanged
    check = {"token": exchanged.get_json()["access_token"], "action": "read", "resource": "doc:42"}
    yield "authz/check", api.device(key, "authz/check", check)
    revoke = {"grant_id": granted.get_json()["grant_id"]}
    yield "users/delegate/revoke", api.call("users/delegate/revoke", revoke, person)
    cli = api.bridge("agents/create", {"display_name": "cli", "scopes": ["read"], "public": True}).get_json()
    started = _form("oauth_device_authorization", {"client_id": cli["agent_id"], "scope": "read"})
    yield "oauth/device_authorization", started
    code = started.get_json()["user_code"]
    yield "activate/lookup", api.call("activate/lookup", {"user_code": code}, person)
    yield "activate/decide", api.call("activate/decide", {"user_code": code, "approve": True}, person)
    poll = {"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "client_id": cli["agent_id"]}
    yield "oauth/token", _form("oauth_token", {**poll, "device_code": started.get_json()["device_code"]})


def _calls(api: Api, auth_host: str) -> Iterator[tuple[str, Any]]:
    """A session that calls every route successfully, through the real functions, as (route, answer)."""
    yield "agents/create", api.bridge("agents/create", {"display_name": "alice"})
    yield from _oauth_calls(api)
    yield from _people_calls(api, auth_host)
    alice = api.new_agent("alice")
    bob = api.new_agent("bob")
    yield "agents/update", api.bridge("agents/update", {"agent_id": bob, "display_name": "robert"})
    yield "agents/update", api.bridge("agents/update", {"agent_id": bob})  # nothing changes
    yield "device/issue", api.bridge("device/issue", {"agent_id": alice})  # no label, no expiry
    issued = api.bridge("device/issue", {"agent_id": alice, "label": "laptop", "ttl_seconds": 3600})
    yield "device/issue", issued
    alice_key = issued.get_json()["device_key"]
    bob_key = api.new_key(bob)["device_key"]
    rotated = api.device(alice_key, "device/issue", {"replaces_key_id": issued.get_json()["key_id"]})
    yield "device/issue", rotated
    alice_key = rotated.get_json()["device_key"]
    spare = api.new_key(alice)["key_id"]
    yield "device/revoke", api.device(alice_key, "device/revoke", {"key_id": spare})
    yield "device/list", api.bridge("device/list", {"agent_id": alice})
    yield "agents/get", api.device(alice_key, "agents/get", {})
    yield "agents/get", api.bridge("agents/get", {"agent_id": bob})
    yield "agents/list", api.bridge("agents/list", {"page_size": 1})
    yield "agents/list", api.bridge("agents/list", {})
    yield "secrets/put", api.device(alice_key, "secrets/put", {"name": "db", "value": "correct horse"})
    yield "secrets/put", api.device(alice_key, "secrets/put", {"name": "old", "value": ""})
    granted = api.device(
        alice_key, "delegate", {"to_agent": bob, "scope": ["secrets/get", "secrets/put"], "ttl_seconds": 600}
    )
    yield "delegate", granted
    delegation = {"x-agentpack-delegation": granted.get_json()["delegation_id"]}
    headers = {"x-agentpack-device-key": bob_key, **delegation}
    yield "secrets/get", api.call("secrets/get", {"name": "db"}, headers)
    yield "secrets/put", api.call("secrets/put", {"name": "db", "value": "v2"}, headers)
    token = {"authorization": "Bearer " + _token(alice, ["secrets/list", "secrets/delete", "agents/get"])}
    yield "secrets/list", api.call("secrets/list", {}, token)
    yield "secrets/delete", api.call("secrets/delete", {"name": "old"}, token)
    yield "agents/get", api.call("agents/get", {}, token)
    other = api.device(bob_key, "delegate", {"to_agent": alice, "scope": ["secrets/list"], "ttl_seconds": 60})
    yield (
        "delegate/revoke",
        api.device(alice_key, "delegate/revoke", {"delegation_id": other.get_json()["delegation_id"]}),
    )
    yield "delegate/list", api.device(alice_key, "delegate/list", {})
    yield "settings/set", api.bridge("settings/set", {"key": "rotation_grace_seconds", "value": 600})
    yield "settings/list", api.device(alice_key, "settings/list", {})
    claims = {"jti": "j-1", "sub": alice, "scope": "secrets/get", "iat": 1_800_000_000, "exp": 1_800_000_300}
    yield "capability/record", api.bridge("capability/record", {**claims, "kid": "dev-1"})
    yield "audit/list", api.bridge("audit/list", {"page_size": 2})
    yield "audit/list", api.bridge("audit/list", {"page_size": 200})
    yield "keys/report-leak", api.call("keys/report-leak", {"keys": ["apkd_not-a-key", "anything"]})
    yield "openapi.json", function_client("openapi_json").get("/")
    yield "activate", function_client("activate").get("/")
    yield "activate/assets", function_client("activate_assets").get("/?file=app.js")
    yield "activate/assets", function_client("activate_assets").get("/?file=app.css")


def _check_answer(route: openapi.Route, answer: Any, document: dict[str, Any]) -> None:
    assert answer.status_code == route.status, (route.path, answer.status_code, answer.get_json())
    assert answer.headers["Cache-Control"] == route.cache_control and answer.headers["x-request-id"]
    if isinstance(route.answer, tuple):  # a page or a file: its media type is one the document names
        assert answer.headers["Content-Type"].split(";")[0] in route.answer, (route.path, answer.headers)
        return
    model: type[BaseModel] = route.answer
    # Strict, unknown fields refused: a field the code adds or drops fails here.
    model.model_validate_json(answer.get_data(), strict=True)
    # And the document's own schema of the answer accepts it too.
    reference = document["paths"]["/" + route.path][route.method.lower()]["responses"][str(route.status)]
    schema = {"components": document["components"], **reference["content"]["application/json"]["schema"]}
    OAS31Validator(schema).validate(answer.get_json())


def test_every_real_answer_fits_its_answer_model(api: Api, document: dict[str, Any], auth_emulator: str) -> None:
    seen: dict[str, int] = {}
    for path, answer in _calls(api, auth_emulator):
        _check_answer(openapi.route(path), answer, document)
        seen[path] = seen.get(path, 0) + 1
    assert set(seen) == set(SERVED), "every route is called"
    events = api.bridge("audit/list", {"page_size": 200}).get_json()["events"]
    assert {event["target"]["kind"] for event in events} == {
        "agent",
        "device_key",
        "delegation",
        "secret",
        "setting",
        "capability",
        "access_token",
        "refresh_family",
        "user",
        "user_grant",
        "relations",
        "device_authorization",
    }
    assert {"token.issue", "token.refresh", "token.revoke", "token.reuse_detected"} <= {e["action"] for e in events}
    assert any("on_behalf_of" in event["actor"] for event in events)


def test_the_answer_models_refuse_drift_either_way(api: Api) -> None:
    agent = api.bridge("agents/create", {"display_name": "drift"}).get_json()
    answers.Agent.model_validate(agent, strict=True)
    with pytest.raises(ValidationError):
        answers.Agent.model_validate({**agent, "colour": "red"}, strict=True)  # a field the model lacks
    with pytest.raises(ValidationError):
        answers.Agent.model_validate({k: v for k, v in agent.items() if k != "disabled"}, strict=True)


def test_error_answers_fit_the_error_body(api: Api, document: dict[str, Any]) -> None:
    for answer in (
        api.call("agents/get", {}),  # 401
        api.bridge("agents/get", {"agent_id": "agt_" + "0" * 22}),  # 404
        api.bridge("agents/create", {"display_name": "x", "colour": "red"}),  # 400
        function_client("agents_create").get("/"),  # 405
    ):
        answers.ErrorBody.model_validate_json(answer.get_data(), strict=True)
        operation = document["paths"]["/agents/get"]["post"]
        assert str(answer.status_code) in operation["responses"]


def test_every_conflict_a_route_answers_is_in_its_document(api: Api, document: dict[str, Any]) -> None:
    agent_id = api.new_agent("holds a key")
    api.new_key(agent_id)
    public_id = api.bridge("agents/create", {"display_name": "cli", "public": True}).get_json()["agent_id"]
    for route, answer in (
        ("agents/update", api.bridge("agents/update", {"agent_id": agent_id, "public": True})),  # a live key
        ("device/issue", api.bridge("device/issue", {"agent_id": public_id})),  # a public agent holds none
    ):
        assert answer.status_code == 409, (route, answer.get_json())
        answers.ErrorBody.model_validate_json(answer.get_data(), strict=True)
        assert "409" in document["paths"][f"/{route}"]["post"]["responses"], route


# The secrets routes that name a secret check the body before refusing the bridge key: give them a valid one.
BODIES = {"secrets/put": {"name": "n", "value": "v"}, "secrets/get": {"name": "n"}, "secrets/delete": {"name": "n"}}


def test_who_may_call_each_route_is_what_the_document_says(api: Api) -> None:
    """Each credential alone (and a delegation beside a device key or token): refused with 403 exactly
    where the route's security requirements leave it out. Allowed callers get past the credential
    checks, to an answer or a body error, never 401 or 403. Access tokens, Bearer and DPoP-bound, carry
    every route in their scope: only the route's own rule may refuse them."""
    alice, bob = api.new_agent("alice"), api.new_agent("bob")
    alice_key, bob_key = api.new_key(alice)["device_key"], api.new_key(bob)["device_key"]
    # The routes a credential reaches (keys/report-leak takes none: any credential sent is ignored).
    every_route = [r.path for r in openapi.ROUTES if r.method == "POST" and not r.is_oauth and r.security]
    authz = ["authz:write", "authz:read", "authz:check"]  # the authz routes ask for these, not their names
    assert api.bridge("agents/update", {"agent_id": alice, "scopes": every_route + authz}).status_code == 200
    granted = api.device(
        alice_key, "delegate", {"to_agent": bob, "scope": list(delegations.DELEGABLE_ROUTES), "ttl_seconds": 600}
    )
    delegation = {"x-agentpack-delegation": granted.get_json()["delegation_id"]}
    bearer = _form("oauth_token", {"grant_type": "client_credentials"}, _basic(alice, alice_key)).get_json()
    dpop_seed = crypto.new_signing_key()[0]
    bound = _form(
        "oauth_token",
        {"grant_type": "client_credentials"},
        {**_basic(alice, alice_key), "DPoP": _proof(dpop_seed, config.issuer() + "/oauth/token")},
    ).get_json()
    assert bearer["token_type"] == "Bearer" and bound["token_type"] == "DPoP"
    assert set(bearer["scope"].split()) == set(every_route + authz)
    credentials: dict[tuple[str, ...], Any] = {
        (openapi.BRIDGE,): lambda route: {"x-agentpack-key": BRIDGE_KEY},
        (openapi.DEVICE,): lambda route: {"x-agentpack-device-key": alice_key},
        (openapi.CAPABILITY,): lambda route: {"authorization": "Bearer " + _token(alice, every_route)},
        (openapi.ACCESS_TOKEN,): lambda route: {"authorization": "Bearer " + bearer["access_token"]},
        (openapi.DPOP_TOKEN, openapi.DPOP_PROOF): lambda route: _dpop(dpop_seed, bound["access_token"], route),
        (openapi.DEVICE, openapi.DELEGATION): lambda route: {"x-agentpack-device-key": bob_key, **delegation},
        (openapi.CAPABILITY, openapi.DELEGATION): lambda route: {
            "authorization": "Bearer " + _token(bob, every_route),
            **delegation,
        },
    }
    wrong = []
    for route in openapi.ROUTES:
        if route.method != "POST" or route.is_oauth or not route.security:  # no credential: headers ignored
            continue
        for schemes, headers in credentials.items():
            status = api.call(route.path, BODIES.get(route.path, {}), headers(route.path)).status_code
            allowed = schemes in route.security
            if status == 401 or (status == 403) == allowed:
                wrong.append((route.path, schemes, status))
    assert wrong == [], wrong
    # Every route an agent credential reaches takes access tokens, but those that mint or revoke credentials.
    for route in openapi.ROUTES:
        agent_reaches = any(openapi.DEVICE in alternative for alternative in route.security)
        minting = route.path in ("device/issue", "device/revoke", "delegate", "delegate/revoke")
        minting |= route.path == "users/delegate/revoke"
        assert ((openapi.ACCESS_TOKEN,) in route.security) == (agent_reaches and not minting), route.path


def test_who_may_call_the_oauth_endpoints_is_what_the_document_says(api: Api, document: dict[str, Any]) -> None:
    """HTTP Basic and the form body's client authentication (the empty requirement) on every endpoint;
    the bridge key on introspection only; any other header credential is no client authentication."""
    agent = api.new_agent("client")
    key = api.new_key(agent)["device_key"]
    token = _form("oauth_token", {"grant_type": "client_credentials"}, _basic(agent, key)).get_json()["access_token"]
    bodies = {"oauth/token": {"grant_type": "client_credentials"}, "oauth/introspect": {"token": token}}
    ways: dict[tuple[str, ...], tuple[dict[str, str], dict[str, str]]] = {
        (openapi.CLIENT_BASIC,): (_basic(agent, key), {}),
        (): ({}, {"client_id": agent, "client_secret": key}),
        (openapi.BRIDGE,): ({"x-agentpack-key": BRIDGE_KEY}, {}),
        (openapi.DEVICE,): ({"x-agentpack-device-key": key}, {}),
    }
    for route in (r for r in openapi.ROUTES if r.path.startswith("oauth/")):
        for schemes, (headers, form) in ways.items():
            body = {**bodies.get(route.path, {"token": "unknown"}), **form}
            answer = _form(route.operation_id, body, headers)
            assert (answer.status_code == 200) == (schemes in route.security), (route.path, schemes, answer.json)
            if answer.status_code != 200:
                assert (
                    answer.status_code == 401 and str(401) in document["paths"]["/" + route.path]["post"]["responses"]
                )


def test_oauth_error_answers_fit_the_error_body_and_the_document(api: Api, document: dict[str, Any]) -> None:
    agent = api.new_agent("client")
    key = api.new_key(agent)["device_key"]
    cases = [
        ("oauth/token", {"grant_type": "client_credentials"}, _basic(agent, key[:-1] + "x"), 401, "invalid_client"),
        ("oauth/token", {"grant_type": "password"}, _basic(agent, key), 400, "unsupported_grant_type"),
        (
            "oauth/token",
            {"grant_type": "client_credentials", "scope": "admin"},
            _basic(agent, key),
            400,
            "invalid_scope",
        ),
        (
            "oauth/token",
            {"grant_type": "client_credentials", "resource": "ftp://x"},
            _basic(agent, key),
            400,
            "invalid_target",
        ),
        ("oauth/token", {"grant_type": "refresh_token", "refresh_token": "apkr_x"}, _basic(agent, key), 400, None),
        ("oauth/introspect", {}, _basic(agent, key), 400, "invalid_request"),
        ("oauth/revoke", {"token": "t"}, {"x-agentpack-key": BRIDGE_KEY}, 401, "invalid_client"),
    ]
    for route, body, headers, status, code in cases:
        answer = _form(route.replace("/", "_"), body, headers)
        assert answer.status_code == status, (route, body, answer.get_json())
        parsed = answers.ErrorBody.model_validate_json(answer.get_data(), strict=True)
        assert code is None or parsed.error == code
        assert answer.headers["Cache-Control"] == "no-store"
        described = document["paths"]["/" + route]["post"]["responses"][str(status)]["description"]
        assert parsed.error in described, (route, parsed.error, described)
    challenged = _form("oauth_token", {"grant_type": "client_credentials"}, _basic(agent, "apkd_wrong"))
    assert challenged.status_code == 401 and challenged.headers["WWW-Authenticate"].startswith("Basic")
    json_body = function_client("oauth_token").post("/", json={"grant_type": "client_credentials"})
    assert json_body.status_code == 415 and "415" in document["paths"]["/oauth/token"]["post"]["responses"]
    assert function_client("oauth_token").get("/").status_code == 405
    assert function_client("well_known_jwks_json").post("/").status_code == 405


def test_the_jwks_verifies_a_real_access_token_with_pyjwt(api: Api) -> None:
    """What the document promises a resource server: the token is an RFC 9068 JWT, verifiable with the JWKS."""
    import jwt

    agent = api.new_agent("client")
    api.bridge("agents/update", {"agent_id": agent, "scopes": ["read:reports"]})
    key = api.new_key(agent)["device_key"]
    issued = _form(
        "oauth_token",
        {"grant_type": "client_credentials", "resource": "https://reports.example.com"},
        _basic(agent, key),
    ).get_json()
    keys = jwt.PyJWKSet.from_dict(function_client("well_known_jwks_json").get("/").get_json())
    kid = jwt.get_unverified_header(issued["access_token"])["kid"]
    signing_key = next(k for k in keys.keys if k.key_id == kid)
    claims = jwt.decode(
        issued["access_token"],
        signing_key,
        algorithms=["EdDSA"],
        audience="https://reports.example.com",
        issuer=config.issuer(),
    )
    assert jwt.get_unverified_header(issued["access_token"])["typ"] == "at+jwt"
    assert claims["sub"] == claims["client_id"] == agent and claims["scope"] == "read:reports"
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(issued["access_token"], signing_key, algorithms=["EdDSA"], audience=config.issuer())


# --- the function serving it ----------------------------------------------------------------


def test_openapi_json_answers_get_with_the_document_and_refuses_post() -> None:
    client = function_client("openapi_json")
    answer = client.get("/")
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    assert answer.get_json() == openapi.document()
    refused = client.post("/", json={})
    assert refused.status_code == 405 and refused.headers["Allow"] == "GET"
    assert refused.get_json()["error"] == "method_not_allowed"
    assert function_client("agents_create").get("/").headers["Allow"] == "POST"


def test_the_local_server_serves_the_document_at_its_route() -> None:
    from scripts import serve

    client = Client(serve.build_app())
    answer = client.get("/openapi.json")
    assert answer.status_code == 200
    assert set(json.loads(answer.get_data())["paths"]) == {"/" + route for route in SERVED}


# --- docs -----------------------------------------------------------------------------------

# Written by other engineers; links to them are expected before they land.
EXPECTED_BY_OTHERS = {"docs/quickstart.md", "docs/walkthrough.md", "docs/deploy.md", "docs/cli.md"}
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _anchors(source: Path) -> set[str]:
    """The fragment GitHub gives each heading: lower case, punctuation dropped, spaces to hyphens."""
    found: set[str] = set()
    for heading in re.findall(r"^#+ (.+)$", source.read_text(), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in found:
            n += 1
            candidate = f"{slug}-{n}"
        found.add(candidate)
    return found


def test_every_relative_link_in_the_docs_points_to_a_file_and_heading() -> None:
    dead = []
    for source in _documents():
        for target in _LINK.findall(source.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, fragment = target.partition("#")
            resolved = (source.parent / path).resolve() if path else source
            name = resolved.relative_to(ROOT).as_posix() if resolved.is_relative_to(ROOT) else str(resolved)
            if name in EXPECTED_BY_OTHERS and not resolved.exists():
                continue
            if not resolved.exists() or (fragment and fragment not in _anchors(resolved)):
                dead.append(f"{source.relative_to(ROOT)} -> {target}")
    assert dead == []


def test_the_docs_link_nothing_outside_the_repository() -> None:
    for source in _documents():
        text = source.read_text()
        assert "API.md" not in text, source
        for target in _LINK.findall(text):
            assert not re.match(r"[a-z]+:", target), (source, target)
            resolved = (source.parent / target.split("#", 1)[0]).resolve()
            assert resolved.is_relative_to(ROOT), (source, target)


def test_the_reference_covers_every_route_and_setting() -> None:
    reference = (ROOT / "docs/reference.md").read_text()
    for route in SERVED:
        assert f"`/{route}`" in reference, route
    for key in allowlist.ALLOW_LIST:
        assert f"`{key}`" in reference, key
    for action in audit.ACTIONS:
        assert f"`{action}`" in reference, action


def test_the_key_patterns_in_the_docs_find_real_keys_and_check_them() -> None:
    from shared import ids, keys

    text = (ROOT / "docs/credentials.md").read_text()
    patterns = dict(re.findall(r"^(bridge key|device key|either):\s+(\S+)$", text, re.MULTILINE))
    snippet = re.search(r"```python\n(.*?)```", text, re.DOTALL)
    assert set(patterns) == {"bridge key", "device key", "either"} and snippet is not None
    namespace: dict[str, Any] = {}
    exec(snippet.group(1), namespace)  # noqa: S102 - the documented checksum code, run as a reader would
    bridge = keys.new_bridge_key()
    device = forged_device_key(ids.new_device_key_id(ids.new_agent_id()))
    for label, key in (("bridge key", bridge), ("device key", device)):
        line = f"export KEY={key} # leaked"
        assert [m.group(0) for m in re.finditer(patterns[label], line)] == [key]
        assert [m.group(0) for m in re.finditer(patterns["either"], line)] == [key]
        assert namespace["has_valid_check"](key)
        assert not namespace["has_valid_check"](key[:-1] + ("0" if key[-1] != "0" else "1"))
    assert re.search(patterns["bridge key"], device) is None and re.search(patterns["device key"], bridge) is None
