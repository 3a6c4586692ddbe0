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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from pydantic import BaseModel, ValidationError
from werkzeug.test import Client

from scripts.functions_index import all_functions
from shared import allowlist, answers, audit, clock, delegations, openapi, tokens
from tests.conftest import BRIDGE_KEY, ROOT, Api, function_client

DEV_SEED = base64.urlsafe_b64decode((ROOT / "emulator-config/dev-capability-signing.key").read_text().strip() + "=")
SERVED = {function.route: function for function in all_functions()}


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
    """``module.Model`` for every ``call.body(module.Model)`` and ``call.peek(...)`` in a function file."""
    found = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("body", "peek")
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
    reference = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    properties = document["components"]["schemas"][reference.rsplit("/", 1)[1]]["properties"]
    assert set(properties) == set(route.request.model_fields)


# --- real answers ---------------------------------------------------------------------------


def _token(agent_id: str, scopes: list[str]) -> str:
    return tokens.mint(DEV_SEED, "dev-1", agent_id, scopes, 300, clock.now())


def _calls(api: Api) -> Iterator[tuple[str, Any]]:
    """A session that calls every route successfully, through the real functions, as (route, answer)."""
    yield "agents/create", api.bridge("agents/create", {"display_name": "alice"})
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
    yield "openapi.json", function_client("openapi_json").get("/")


def _check_answer(route: openapi.Route, answer: Any, document: dict[str, Any]) -> None:
    assert answer.status_code == route.status, (route.path, answer.status_code, answer.get_json())
    assert answer.headers["Cache-Control"] == "no-store" and answer.headers["x-request-id"]
    model: type[BaseModel] = route.answer
    # Strict, unknown fields refused: a field the code adds or drops fails here.
    model.model_validate_json(answer.get_data(), strict=True)
    # And the document's own schema of the answer accepts it too.
    reference = document["paths"]["/" + route.path][route.method.lower()]["responses"][str(route.status)]
    schema = {"components": document["components"], **reference["content"]["application/json"]["schema"]}
    OAS31Validator(schema).validate(answer.get_json())


def test_every_real_answer_fits_its_answer_model(api: Api, document: dict[str, Any]) -> None:
    seen: dict[str, int] = {}
    for path, answer in _calls(api):
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
    }
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


# The secrets routes that name a secret check the body before refusing the bridge key: give them a valid one.
BODIES = {"secrets/put": {"name": "n", "value": "v"}, "secrets/get": {"name": "n"}, "secrets/delete": {"name": "n"}}


def test_who_may_call_each_route_is_what_the_document_says(api: Api) -> None:
    """Each credential alone (and a delegation beside a device key or token): refused with 403 exactly
    where the route's security requirements leave it out. Allowed callers get past the credential
    checks, to an answer or a body error, never 401 or 403."""
    alice, bob = api.new_agent("alice"), api.new_agent("bob")
    alice_key, bob_key = api.new_key(alice)["device_key"], api.new_key(bob)["device_key"]
    every_route = [route.path for route in openapi.ROUTES if route.method == "POST"]
    granted = api.device(
        alice_key, "delegate", {"to_agent": bob, "scope": list(delegations.DELEGABLE_ROUTES), "ttl_seconds": 600}
    )
    delegation = {"x-agentpack-delegation": granted.get_json()["delegation_id"]}
    credentials = {
        (openapi.BRIDGE,): {"x-agentpack-key": BRIDGE_KEY},
        (openapi.DEVICE,): {"x-agentpack-device-key": alice_key},
        (openapi.CAPABILITY,): {"authorization": "Bearer " + _token(alice, every_route)},
        (openapi.DEVICE, openapi.DELEGATION): {"x-agentpack-device-key": bob_key, **delegation},
        (openapi.CAPABILITY, openapi.DELEGATION): {"authorization": "Bearer " + _token(bob, every_route), **delegation},
    }
    wrong = []
    for route in openapi.ROUTES:
        if route.method != "POST":
            continue
        for schemes, headers in credentials.items():
            status = api.call(route.path, BODIES.get(route.path, {}), headers).status_code
            allowed = schemes in route.security
            if status == 401 or (status == 403) == allowed:
                wrong.append((route.path, schemes, status))
    assert wrong == [], wrong


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
    device = keys.new_device_key(ids.new_device_key_id(ids.new_agent_id()))
    for label, key in (("bridge key", bridge), ("device key", device)):
        line = f"export KEY={key} # leaked"
        assert [m.group(0) for m in re.finditer(patterns[label], line)] == [key]
        assert [m.group(0) for m in re.finditer(patterns["either"], line)] == [key]
        assert namespace["has_valid_check"](key)
        assert not namespace["has_valid_check"](key[:-1] + ("0" if key[-1] != "0" else "1"))
    assert re.search(patterns["bridge key"], device) is None and re.search(patterns["device key"], bridge) is None
