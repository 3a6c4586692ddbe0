"""The HTTP conventions of the contract, attacked on every identity-core route.

Methods, sizes, content types, the order of the checks (405/413/415, then the
credential, then the body), strict bodies, ``x-request-id``, and what never
appears in an answer or a log line: keys, hashes, stack traces, echoed input.
"""

from __future__ import annotations

import io
import json
import logging
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared import ids, keys
from tests import log_scan
from tests.conftest import BRIDGE_KEY, DEV_ENV, ROOT, Api, forged_device_key, function_client

ROUTES = [
    "agents/create",
    "agents/get",
    "agents/list",
    "agents/update",
    "device/issue",
    "device/revoke",
    "device/list",
    "settings/list",
    "settings/set",
    "audit/list",
]
BRIDGE = {"x-agentpack-key": BRIDGE_KEY}
JSON = "application/json"
MARK = "ZQXMARK"  # never a legal part of an answer: if it shows up, input was echoed
MAX_BODY = 64 * 1024
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

# Well-formed IDs that name nothing.
FAKE_AGENT = "agt_" + "0" * 22
FAKE_KEY = "dk_" + "0" * 44

# A body per route that passes validation (what it names may not exist).
BASE: dict[str, dict[str, Any]] = {
    "agents/create": {"display_name": "ok"},
    "agents/get": {"agent_id": FAKE_AGENT},
    "agents/list": {},
    "agents/update": {"agent_id": FAKE_AGENT},
    "device/issue": {"agent_id": FAKE_AGENT},
    "device/revoke": {"key_id": FAKE_KEY},
    "device/list": {"agent_id": FAKE_AGENT},
    "settings/list": {},
    "settings/set": {"key": "rotation_grace_seconds", "value": 60},
    "audit/list": {"action": "agent.create"},
}
INT_FIELDS = [
    ("agents/list", "page_size"),
    ("device/issue", "ttl_seconds"),
    ("settings/set", "value"),
    ("audit/list", "page_size"),
]
ID_FIELDS = [
    ("agents/get", "agent_id"),
    ("agents/update", "agent_id"),
    ("device/issue", "agent_id"),
    ("device/issue", "replaces_key_id"),
    ("device/revoke", "key_id"),
    ("device/list", "agent_id"),
    ("audit/list", "agent_id"),
]
# A field per route (known where the route has any) and a valid value, to send twice.
DUPLICABLE: dict[str, tuple[str, Any]] = {
    "agents/create": ("display_name", "x"),
    "agents/get": ("agent_id", FAKE_AGENT),
    "agents/list": ("page_size", 5),
    "agents/update": ("agent_id", FAKE_AGENT),
    "device/issue": ("agent_id", FAKE_AGENT),
    "device/revoke": ("key_id", FAKE_KEY),
    "device/list": ("agent_id", FAKE_AGENT),
    "settings/list": ("zz", 1),
    "settings/set": ("value", 120),
    "audit/list": ("page_size", 5),
}


# ---------------------------------------------------------------- helpers


def assert_error(answer: Any, status: int, code: str) -> str:
    """The answer is exactly the contract's error shape with this status and code; returns the description."""
    assert answer.status_code == status, (answer.status_code, answer.data[:300])
    assert answer.mimetype == JSON
    body = json.loads(answer.data)
    assert isinstance(body, dict) and set(body) == {"error", "error_description"}, body
    assert body["error"] == code, body
    description = body["error_description"]
    assert isinstance(description, str) and description
    assert "Traceback" not in description and 'File "' not in description
    assert_request_id(answer)
    return description


def assert_request_id(answer: Any) -> str:
    rid = answer.headers.get("x-request-id")
    assert rid is not None and REQUEST_ID.fullmatch(rid), rid
    return str(rid)


def assert_no_echo(answer: Any, *needles: str) -> None:
    text = answer.data.decode("utf-8", "replace") + "".join(f"{k}: {v}\n" for k, v in answer.headers.items())
    for needle in (MARK, *needles):
        assert needle not in text, (needle, text[:400])


def splice(base: dict[str, Any], field: str, raw: str) -> bytes:
    """``base`` as JSON with ``"field": <raw JSON text>`` added (raw may be anything, even invalid)."""
    rest = {k: v for k, v in base.items() if k != field}
    head = json.dumps(rest)[:-1]
    sep = ", " if rest else ""
    return f'{head}{sep}"{field}": {raw}}}'.encode()


def duplicated(body: dict[str, Any], field: str, value: Any) -> bytes:
    """``body`` as JSON with ``field`` sent a second time, last."""
    assert field in body
    raw = json.dumps(body)[:-1] + f", {json.dumps(field)}: {json.dumps(value)}}}"
    assert raw.count(json.dumps(field)) == 2
    return raw.encode()


def post_raw(route: str, raw: bytes, headers: dict[str, str] | None = None, content_type: str = JSON) -> Any:
    return function_client(route.replace("/", "_")).post(
        "/", data=raw, headers=headers or {}, content_type=content_type
    )


def unknown_device_key() -> str:
    """A well-formed device key with a correct checksum that was never issued."""
    return forged_device_key(ids.new_device_key_id(ids.new_agent_id()))


def bad_checksum(key: str) -> str:
    last = "A" if key[-1] != "A" else "B"
    return key[:-1] + last


# ---------------------------------------------------------------- 405


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("method", ["get", "put", "delete", "patch", "options"])
def test_other_methods_are_405_even_without_credential(api: Api, route: str, method: str) -> None:
    client = function_client(route.replace("/", "_"))
    answer = getattr(client, method)("/")
    assert_error(answer, 405, "method_not_allowed")
    # With a valid credential and a valid body, or a body far too large and of the wrong type: still 405.
    answer = getattr(client, method)("/", json=BASE[route], headers=BRIDGE)
    assert_error(answer, 405, "method_not_allowed")
    answer = getattr(client, method)("/", data=b"x" * (MAX_BODY + 10), content_type="text/plain")
    assert_error(answer, 405, "method_not_allowed")


@pytest.mark.parametrize("route", ROUTES)
def test_head_is_405(route: str) -> None:
    answer = function_client(route.replace("/", "_")).head("/", headers=BRIDGE)
    assert answer.status_code == 405
    assert_request_id(answer)


# ---------------------------------------------------------------- 413


def _big_body(size: int) -> bytes:
    head = b'{"display_name": "' + MARK.encode()
    return head + b"a" * (size - len(head) - 2) + b'"}'


@pytest.mark.parametrize("route", ROUTES)
def test_body_over_64_kib_is_413_before_the_credential(route: str) -> None:
    raw = _big_body(MAX_BODY + 1)
    assert len(raw) == MAX_BODY + 1
    answer = post_raw(route, raw)
    assert_error(answer, 413, "payload_too_large")
    assert_no_echo(answer)
    answer = post_raw(route, raw, BRIDGE)
    assert_error(answer, 413, "payload_too_large")
    answer = post_raw(route, _big_body(10 * MAX_BODY), {"x-agentpack-key": "nonsense"})
    assert_error(answer, 413, "payload_too_large")


@pytest.mark.parametrize("route", ROUTES)
def test_body_of_exactly_64_kib_is_not_413(route: str) -> None:
    small_raw = json.dumps(BASE[route]).encode()
    raw = small_raw + b" " * (MAX_BODY - len(small_raw))
    assert len(raw) == MAX_BODY
    answer = post_raw(route, raw, BRIDGE)
    small = post_raw(route, small_raw, BRIDGE)
    assert answer.status_code == small.status_code != 413
    assert answer.status_code < 500


@pytest.mark.parametrize("route", ["agents/create", "settings/set", "audit/list"])
def test_body_without_content_length_over_64_kib_is_413(route: str) -> None:
    """A chunked body (no Content-Length; the server says the input is terminated) is still bounded."""
    for headers in ({}, BRIDGE):
        answer = function_client(route.replace("/", "_")).post(
            "/",
            input_stream=io.BytesIO(_big_body(4 * MAX_BODY)),
            content_type=JSON,
            headers={**headers, "Transfer-Encoding": "chunked"},
            environ_overrides={"CONTENT_LENGTH": "", "wsgi.input_terminated": True},
        )
        assert_error(answer, 413, "payload_too_large")


def test_content_length_smaller_than_body_reads_only_what_it_declares() -> None:
    """The server reads Content-Length bytes, never more: 10 bytes of a JSON text are not JSON."""
    answer = function_client("agents_create").post(
        "/",
        data=_big_body(MAX_BODY + 100),
        content_type=JSON,
        headers=BRIDGE,
        environ_overrides={"CONTENT_LENGTH": "10"},
    )
    assert_error(answer, 400, "invalid_request")
    assert_no_echo(answer)


@pytest.fixture(scope="module")
def live_server(emulator_host: str) -> Iterator[tuple[int, Path]]:
    """settings/list served by the real functions-framework server (gunicorn), for raw HTTP framing."""
    port = _free_port()
    handle, name = tempfile.mkstemp(prefix="agentpack-live-", suffix=".log")
    os.close(handle)
    log_path = Path(name)
    env = {**os.environ, **DEV_ENV, "FIRESTORE_EMULATOR_HOST": emulator_host, "PYTHONPATH": str(ROOT)}
    command = [
        str(Path(sys.executable).parent / "functions-framework"),
        "--target=settings_list",
        f"--source={ROOT / 'functions/settings_list/main.py'}",
        "--host=127.0.0.1",
        f"--port={port}",
    ]
    with log_path.open("wb") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert server.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        yield port, log_path
    finally:
        server.terminate()
        server.wait(timeout=10)
        log_scan.SESSION.feed("functions-framework", log_path.read_text(errors="replace"))  # scanned at the end
        log_path.unlink()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raw_http(
    port: int, head: bytes, body: bytes = b"", *, half_close: bool = False
) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are; answer (status, lower-cased headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(head + b"\r\n" + body)
        if half_close:
            conn.shutdown(socket.SHUT_WR)
        data = b""
        while b"\r\n\r\n" not in data or len(data) < _expected_length(data):
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    header_text, _, rest = data.partition(b"\r\n\r\n")
    status_line, *lines = header_text.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, rest[: int(headers.get("content-length", len(rest)))]


def _expected_length(data: bytes) -> int:
    header_text, _, _ = data.partition(b"\r\n\r\n")
    match = re.search(rb"(?im)^content-length:\s*(\d+)", header_text)
    return len(header_text) + 4 + int(match.group(1)) if match else 1 << 30


def _head(*lines: str) -> bytes:
    return "".join(
        f"{line}\r\n" for line in ["POST / HTTP/1.1", "Host: localhost", "Connection: close", *lines]
    ).encode()


def _assert_wire_error(answer: tuple[int, dict[str, str], bytes], status: int, code: str) -> None:
    got, headers, body = answer
    assert got == status, answer
    assert json.loads(body) == {"error": code, "error_description": json.loads(body)["error_description"]}
    assert REQUEST_ID.fullmatch(headers.get("x-request-id", "")), headers


def test_a_real_server_bounds_bodies_whatever_the_framing_says(live_server: tuple[int, Path]) -> None:
    port, log_path = live_server
    big = _big_body(2 * MAX_BODY)
    # A Content-Length far beyond the limit, then only two bytes, then the client stops sending.
    answer = raw_http(
        port, _head("Content-Type: application/json", f"Content-Length: {100 * MAX_BODY}"), b"{}", half_close=True
    )
    _assert_wire_error(answer, 413, "payload_too_large")
    # Honest but too large, without a credential.
    answer = raw_http(port, _head("Content-Type: application/json", f"Content-Length: {len(big)}"), big)
    _assert_wire_error(answer, 413, "payload_too_large")
    # Chunked: no Content-Length at all.
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(big[i : i + 8192]), big[i : i + 8192]) for i in range(0, len(big), 8192))
    answer = raw_http(
        port, _head("Content-Type: application/json", "Transfer-Encoding: chunked"), chunks + b"0\r\n\r\n"
    )
    _assert_wire_error(answer, 413, "payload_too_large")
    # A Content-Length shorter than what follows: only the declared bytes are the body ('{"display_' is not JSON).
    answer = raw_http(
        port, _head("Content-Type: application/json", "Content-Length: 10", f"x-agentpack-key: {BRIDGE_KEY}"), big
    )
    _assert_wire_error(answer, 400, "invalid_request")
    # The control: a small, well-framed request is served.
    answer = raw_http(
        port, _head("Content-Type: application/json", "Content-Length: 2", f"x-agentpack-key: {BRIDGE_KEY}"), b"{}"
    )
    assert answer[0] == 200, answer
    logged = log_path.read_text()
    assert "Traceback" not in logged and BRIDGE_KEY not in logged and MARK not in logged


# ---------------------------------------------------------------- 415


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "application/json; charset=latin-1",
        "application/jsonx",
        "",
    ],
)
def test_wrong_content_type_with_a_body_is_415_before_the_credential(route: str, content_type: str) -> None:
    raw = json.dumps(BASE[route]).encode() if BASE[route] else b"{}"
    client = function_client(route.replace("/", "_"))
    for headers in ({}, BRIDGE):
        if content_type:
            answer = client.post("/", data=raw, content_type=content_type, headers=headers)
        else:
            answer = client.post("/", data=raw, headers=headers)  # no Content-Type at all
            assert "Content-Type" not in answer.request.headers
        assert_error(answer, 415, "unsupported_media_type")


@pytest.mark.parametrize("content_type", ["application/json", "APPLICATION/JSON", "application/json; charset=UTF-8"])
def test_json_content_types_are_accepted(api: Api, content_type: str) -> None:
    answer = post_raw("settings/list", b"{}", BRIDGE, content_type=content_type)
    assert answer.status_code == 200, answer.data


# ---------------------------------------------------------------- the credential comes before the body

GARBAGE_BODIES = [
    b"not json " + MARK.encode(),
    b"[1, 2, 3]",
    b'{"a": 1, "a": 2}',
    b'{"value": NaN}',
    b'{"zz_unknown": "' + MARK.encode() + b'"}',
    b'{"display_name": "\xff\xfe"}',
    b'{"x": ' + b"[" * 20000 + b"}",
    b"",
    b"{}",
]


@pytest.mark.parametrize("route", ROUTES)
def test_without_a_valid_credential_any_body_is_401(route: str) -> None:
    bad_credentials: list[dict[str, str]] = [
        {},
        {"x-agentpack-key": ""},
        {"x-agentpack-key": bad_checksum(BRIDGE_KEY)},
        {"x-agentpack-key": keys.new_bridge_key()},  # well-formed, never configured
        {"x-agentpack-device-key": unknown_device_key()},
        {"x-agentpack-device-key": BRIDGE_KEY},
        {"Authorization": "Bearer " + MARK},
    ]
    for headers in bad_credentials:
        for raw in [*GARBAGE_BODIES, json.dumps(BASE[route]).encode()]:
            answer = post_raw(route, raw, headers)
            assert_error(answer, 401, "unauthenticated")
            assert_no_echo(answer)


@pytest.mark.parametrize("route", ROUTES)
def test_every_401_is_byte_for_byte_the_same(route: str) -> None:
    answers = {
        post_raw(route, b"{}", headers).data
        for headers in (
            {},
            {"x-agentpack-key": bad_checksum(BRIDGE_KEY)},
            {"x-agentpack-key": keys.new_bridge_key()},
            {"x-agentpack-device-key": unknown_device_key()},
            {"x-agentpack-device-key": "apkd_" + MARK},
        )
    }
    assert len(answers) == 1


# ---------------------------------------------------------------- strict bodies, with the bridge key


@pytest.mark.parametrize("route", ROUTES)
def test_empty_body_counts_as_an_empty_object(route: str) -> None:
    as_object = post_raw(route, b"{}", BRIDGE)
    for raw, content_type in ((b"", JSON), (b"  \n", JSON)):
        answer = post_raw(route, raw, BRIDGE, content_type=content_type)
        assert (answer.status_code, answer.get_json()) == (as_object.status_code, as_object.get_json())
    no_type = function_client(route.replace("/", "_")).post("/", headers=BRIDGE)
    assert (no_type.status_code, no_type.get_json()) == (as_object.status_code, as_object.get_json())
    assert as_object.status_code < 500


@pytest.mark.parametrize("route", ROUTES)
def test_not_json_is_400(route: str) -> None:
    for raw in [
        b"{",
        b"{'display_name': 'x'}",
        b'{"display_name": "' + MARK.encode(),
        b"abc" + MARK.encode(),
        b'{"a": 1,}',
        b"{} {}",
        b'{"a": undefined}',
    ]:
        answer = post_raw(route, raw, BRIDGE)
        assert_error(answer, 400, "invalid_request")
        assert_no_echo(answer)


@pytest.mark.parametrize("route", ROUTES)
def test_invalid_utf8_is_400(route: str) -> None:
    for raw in [
        b'{"display_name": "\xff\xfe' + MARK.encode() + b'"}',
        b'{"\xc3\x28' + MARK.encode() + b'": 1}',
        b"\xed\xa0\x80{}",  # an encoded surrogate is not UTF-8
        b"\xfe\xff\x00{\x00}",
    ]:
        answer = post_raw(route, raw, BRIDGE)
        assert_error(answer, 400, "invalid_request")
        assert_no_echo(answer)


@pytest.mark.parametrize("route", ROUTES)
def test_top_level_must_be_an_object(route: str) -> None:
    for raw in [b"[]", b"[{}]", b'"' + MARK.encode() + b'"', b"1", b"null", b"true", b"1.5"]:
        answer = post_raw(route, raw, BRIDGE)
        assert_error(answer, 400, "invalid_request")
        assert_no_echo(answer)


@pytest.mark.parametrize("route", ROUTES)
def test_duplicate_keys_are_400(route: str) -> None:
    field, value = DUPLICABLE[route]
    for raw in [
        duplicated({**BASE[route], field: value}, field, value),
        duplicated({**BASE[route], field: value}, field, MARK),
        b'{"zz": {"k": "' + MARK.encode() + b'", "k": 2}}',  # nested duplicates too
    ]:
        answer = post_raw(route, raw, BRIDGE)
        assert_error(answer, 400, "invalid_request")
        assert_no_echo(answer)


@pytest.mark.parametrize("route", ROUTES)
def test_deeply_nested_json_under_the_size_limit_is_400(route: str) -> None:
    for raw in [
        b'{"zz": ' + b"[" * 60000 + b"}",
        b'{"zz": ' + b'{"a":' * 10000 + b"1" + b"}" * 10000 + b"}",
        b"[" * 65000,
    ]:
        assert len(raw) <= MAX_BODY
        answer = post_raw(route, raw, BRIDGE)
        assert_error(answer, 400, "invalid_request")


@pytest.mark.parametrize("route", ROUTES)
def test_unknown_fields_are_400_naming_the_field_never_echoing_the_value(route: str) -> None:
    body = {**BASE[route], "zz_unknown_field": MARK}
    answer = post_raw(route, json.dumps(body).encode(), BRIDGE)
    description = assert_error(answer, 400, "invalid_request")
    assert "zz_unknown_field" in description
    assert_no_echo(answer)
    # A field name that is itself hostile is not echoed either.
    for name in [MARK + "/../x", MARK + "\n\r", MARK + "<script>", MARK + "a" * 200]:
        answer = post_raw(route, json.dumps({**BASE[route], name: 1}).encode(), BRIDGE)
        assert_error(answer, 400, "invalid_request")
        assert_no_echo(answer)


@pytest.mark.parametrize(("route", "field"), INT_FIELDS)
def test_integer_fields_refuse_every_other_type(route: str, field: str) -> None:
    for raw in ["true", "false", '"60"', "60.0", "6e1", "1e400", "[60]", '{"v": 60}', f'"{MARK}"']:
        answer = post_raw(route, splice(BASE[route], field, raw), BRIDGE)
        description = assert_error(answer, 400, "invalid_request")
        assert field in description, (raw, description)
        assert_no_echo(answer)


@pytest.mark.parametrize(("route", "field"), INT_FIELDS)
def test_non_finite_and_huge_numbers_are_400(route: str, field: str) -> None:
    huge = str(10**30)
    enormous = "7" * 5000
    for raw in ["NaN", "Infinity", "-Infinity", huge, "-" + huge, enormous, str(2**53 + 1), str(-(2**53) - 1)]:
        answer = post_raw(route, splice(BASE[route], field, raw), BRIDGE)
        assert_error(answer, 400, "invalid_request")
        assert_no_echo(answer, huge, "77777777", "9007199254740993")


# The contract: "a duplicate key, NaN or Infinity, ... : 400 invalid_request, with the field named in
# error_description". The parser refuses these before the schema sees them and says only "body: ...".
@pytest.mark.parametrize(
    "kind",
    ["NaN", "Infinity", "-Infinity", "10**30", "5000 digits", "duplicate key"],
    ids=lambda k: k.replace(" ", "_"),
)
def test_parser_level_refusals_still_name_the_field(kind: str) -> None:
    raw_value = {
        "NaN": "NaN",
        "Infinity": "Infinity",
        "-Infinity": "-Infinity",
        "10**30": str(10**30),
        "5000 digits": "7" * 5000,
        "duplicate key": "120",
    }[kind]
    unnamed = []
    cases = INT_FIELDS if kind != "duplicate key" else [(r, f) for r, (f, _) in DUPLICABLE.items() if f != "zz"]
    for route, field in cases:
        if kind == "duplicate key":
            value = DUPLICABLE[route][1]
            raw = duplicated({**BASE[route], field: value}, field, value)
        else:
            raw = splice(BASE[route], field, raw_value)
        answer = post_raw(route, raw, BRIDGE)
        description = assert_error(answer, 400, "invalid_request")
        if field not in description:
            unnamed.append(f"{route} {field}: {description!r}")
    assert not unnamed, unnamed


def _bad_ids() -> list[Any]:
    return [
        MARK + "/x",
        "agt_" + MARK + "/",
        MARK + "\x00",
        MARK + "\n",
        MARK + "\r",
        MARK + "\t",
        MARK + "\x1f",
        MARK + "\x7f",
        MARK + "\u0085",
        MARK + "a" * (129 - len(MARK)),  # 129 bytes
        MARK + "é" * 61,  # 68 characters, 129 bytes
        "",
        17,
        True,
        [MARK],
        {"id": MARK},
    ]


@pytest.mark.parametrize(("route", "field"), ID_FIELDS)
def test_ids_with_slash_control_chars_or_over_128_bytes_are_400(route: str, field: str) -> None:
    for value in _bad_ids():
        body = {**BASE[route], field: value}
        answer = post_raw(route, json.dumps(body).encode(), BRIDGE)
        description = assert_error(answer, 400, "invalid_request")
        assert field in description, (value, description)
        assert_no_echo(answer)


@pytest.mark.parametrize(("route", "field"), [r for r in ID_FIELDS if r[0] != "audit/list"])
def test_ids_of_exactly_128_bytes_are_valid_and_name_nothing(route: str, field: str) -> None:
    for value in [MARK + "a" * (128 - len(MARK)), "é" * 64]:
        body = {**BASE[route], field: value}
        answer = post_raw(route, json.dumps(body).encode(), BRIDGE)
        assert_error(answer, 404, "not_found")
        assert_no_echo(answer)


def test_ids_with_lone_surrogates_are_400_and_not_echoed() -> None:
    """A lone surrogate cannot be UTF-8: refused, without quoting the character or where it sits."""
    leaks = []
    for route, field in ID_FIELDS:
        raw = splice(BASE[route], field, '"' + MARK + '\\ud800"')
        answer = post_raw(route, raw, BRIDGE)
        description = assert_error(answer, 400, "invalid_request")
        assert field in description
        assert_no_echo(answer)
        if "ud800" in answer.data.decode().lower() or "position" in description:
            leaks.append(f"{route} {field}: {description!r}")
    assert not leaks, leaks


STRING_CASES: list[tuple[str, str, list[Any]]] = [
    ("agents/create", "display_name", ["", MARK + "a" * 122, MARK + "\x00", MARK + "\n", MARK + "\x9f", 5, None]),
    ("agents/create", "tenant_id", ["", MARK + "/", MARK + " x", MARK + "a" * 58, MARK + "\x00", MARK + "é", 5]),
    ("agents/update", "display_name", ["", MARK + "a" * 122, MARK + "\x01", 5]),
    ("agents/update", "disabled", [1, 0, "true", MARK, [True]]),
    ("agents/list", "tenant_id", ["", MARK + "/", MARK + "a" * 58, 5]),
    ("agents/list", "page_token", ["", MARK + "a" * 250, 5]),
    ("agents/list", "page_size", [0, 201, -1, None]),
    ("device/issue", "label", ["", MARK + "a" * 58, MARK + "\x00", MARK + "\u009b", 5]),
    ("device/issue", "ttl_seconds", [59, 365 * 86400 + 1, 0, -60]),
    ("audit/list", "page_token", ["", MARK + "a" * 250, MARK, "evt_" + MARK, 5]),
    ("audit/list", "page_size", [0, 201, None]),
    ("audit/list", "action", [MARK, "", "agent.create ", "AGENT.CREATE", 5]),
    ("settings/set", "key", [MARK, "", "rotation_grace_seconds ", "__proto__", 5, None]),
]


@pytest.mark.parametrize(("route", "field", "values"), STRING_CASES, ids=[f"{r}-{f}" for r, f, _ in STRING_CASES])
def test_values_out_of_bounds_are_400_naming_the_field(route: str, field: str, values: list[Any]) -> None:
    for value in values:
        body = {**BASE[route], field: value}
        answer = post_raw(route, json.dumps(body).encode(), BRIDGE)
        description = assert_error(answer, 400, "invalid_request")
        assert field in description, (value, description)
        assert_no_echo(answer)


def test_agents_list_page_token_that_is_not_an_agent_id_is_400() -> None:
    answer = post_raw("agents/list", json.dumps({"page_token": "agt_" + MARK}).encode(), BRIDGE)
    assert "page_token" in assert_error(answer, 400, "invalid_request")
    assert_no_echo(answer)


def test_bounds_are_inclusive(api: Api) -> None:
    assert api.bridge("agents/create", {"display_name": "a" * 128}).status_code == 201
    assert api.bridge("agents/create", {"display_name": "x", "tenant_id": "t" * 64}).status_code == 201
    agent = api.new_agent()
    assert api.bridge("device/issue", {"agent_id": agent, "label": "l" * 64, "ttl_seconds": 60}).status_code == 201
    assert api.bridge("agents/list", {"page_size": 200}).status_code == 200
    assert api.bridge("agents/list", {"page_size": 1}).status_code == 200


# ---------------------------------------------------------------- x-request-id


def test_a_sane_request_id_is_echoed_on_every_kind_of_answer(api: Api) -> None:
    sane = ["abc-123", "r.1:2_3-x", "a" * 128, "7"]
    for rid in sane:
        headers = {"x-request-id": rid}
        answers = [
            api.call("settings/list", {}, {**BRIDGE, **headers}),  # 200
            api.call("agents/create", {"display_name": "x"}, {**BRIDGE, **headers}),  # 201
            api.call("agents/get", {"agent_id": FAKE_AGENT}, {**BRIDGE, **headers}),  # 404
            api.call("agents/get", {}, headers),  # 401
            api.call("agents/get", None, {**BRIDGE, **headers}, data=b"[", content_type=JSON),  # 400
            function_client("agents_get").get("/", headers=headers),  # 405
            post_raw("agents/get", b"{}", headers, content_type="text/plain"),  # 415
            post_raw("agents/get", _big_body(MAX_BODY + 1), headers),  # 413
        ]
        for answer in answers:
            assert answer.headers.get("x-request-id") == rid, (answer.status_code, answer.headers)


@pytest.mark.parametrize(
    "rid",
    [
        "a" * 129,
        "a b",
        "abc\tdef",
        "héllo",
        "abc/def",
        "abc;def",
        "<script>",
        "" + MARK + "=1",
    ],
)
def test_an_insane_request_id_is_replaced(api: Api, rid: str) -> None:
    answer = api.call("settings/list", {}, {**BRIDGE, "x-request-id": rid})
    assert answer.status_code == 200
    fresh = assert_request_id(answer)
    assert fresh != rid
    assert MARK not in fresh


@pytest.mark.parametrize("rid", ["abc\ndef", "abc\r\nSet-Cookie: x=y", "abc\x00def", "\r\n"])
def test_a_request_id_with_line_breaks_is_replaced_and_nothing_is_injected(rid: str) -> None:
    answer = function_client("settings_list").post(
        "/",
        data=b"{}",
        content_type=JSON,
        headers=BRIDGE,
        environ_overrides={"HTTP_X_REQUEST_ID": rid},
    )
    assert answer.status_code == 200
    fresh = assert_request_id(answer)
    assert "\n" not in fresh and fresh != rid
    assert "Set-Cookie" not in answer.headers


def test_every_answer_carries_a_fresh_request_id(api: Api) -> None:
    seen = set()
    for _ in range(5):
        for answer in (
            api.bridge("settings/list", {}),
            api.call("settings/list", {}, {}),
            function_client("settings_list").get("/"),
        ):
            seen.add(assert_request_id(answer))
    assert len(seen) == 15


# ---------------------------------------------------------------- secrets never leak into answers or logs


def test_no_answer_or_log_carries_a_key_a_hash_or_a_traceback(
    api: Api, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    agent = api.new_agent()
    issued = api.new_key(agent, label="laptop")
    device_key = issued["device_key"]
    other = api.new_key(agent)["device_key"]
    secrets = [BRIDGE_KEY, device_key, other]
    hashes = [keys.hash_key(k) for k in secrets]
    answers = [
        api.device(device_key, "agents/get", {}),
        api.device(device_key, "device/list", {}),
        api.device(device_key, "settings/list", {}),
        api.device(device_key, "device/issue", {"label": "rotated"}),
        api.device(device_key, "agents/get", {"agent_id": device_key}),
        api.device(bad_checksum(device_key), "agents/get", {}),
        api.device(device_key, "agents/create", {"display_name": "x"}),
        api.bridge("device/list", {"agent_id": agent}),
        api.bridge("agents/get", {"agent_id": device_key + "/"}),
        api.bridge("device/revoke", {"key_id": device_key}),
        api.bridge("settings/set", {"key": device_key, "value": 1}),
        api.bridge("agents/create", {"display_name": "x", "zz": device_key}),
        api.bridge("audit/list", {"action": BRIDGE_KEY}),
        api.bridge("audit/list", {"page_token": device_key}),
        api.call("agents/get", {}, {"x-agentpack-key": bad_checksum(BRIDGE_KEY)}),
        api.call("agents/get", {}, {"x-agentpack-key": BRIDGE_KEY, "x-agentpack-device-key": device_key}),
        api.bridge("device/revoke", {"key_id": issued["key_id"]}),
        api.device(device_key, "agents/get", {}),  # revoked now
        api.bridge("agents/update", {"agent_id": agent, "disabled": True}),
        api.device(other, "agents/get", {}),  # disabled agent
    ]
    # Keys minted along the way (the rotation above) are secrets too.
    secrets += [a.get_json()["device_key"] for a in answers if a.status_code == 201]
    hashes = [keys.hash_key(k) for k in secrets]
    assert len(secrets) == 4
    for answer in answers:
        assert answer.status_code < 500, answer.data
        text = answer.data.decode()
        for secret in [*secrets, *hashes]:
            assert secret not in text or answer.status_code == 201
    assert answers[0].status_code == 200  # the key worked: the test can fail
    assert answers[-3].status_code == 401 and answers[-1].status_code == 401
    captured = capsys.readouterr()
    logged = caplog.text + "".join(r.getMessage() for r in caplog.records) + captured.out + captured.err
    for secret in [*secrets, *hashes]:
        assert secret not in logged
    assert "Traceback" not in logged
    assert not any(r.exc_info for r in caplog.records)


# ---------------------------------------------------------------- a bounded, seeded fuzz loop

_ATOMS: list[Any] = [
    0,
    1,
    -1,
    59,
    60,
    128,
    2**31,
    2**53,
    2**53 + 1,
    -(2**63),
    0.5,
    -0.0,
    1e308,
    True,
    False,
    None,
    "",
    "a",
    "agt_",
    FAKE_AGENT,
    FAKE_KEY,
    "dk_",
    "/",
    "..",
    "\x00",
    "\ud800",
    "\u202e",
    "é" * 70,
    "a" * 300,
    "rotation_grace_seconds",
    "device_key_max_active",
    "agent.create",
    "evt_0000000000000aaaaaaaaaa",
    MARK,
]
_FIELDS = [
    "display_name",
    "tenant_id",
    "agent_id",
    "disabled",
    "label",
    "ttl_seconds",
    "replaces_key_id",
    "key_id",
    "page_size",
    "page_token",
    "key",
    "value",
    "action",
    "__proto__",
    "",
    "zz_field",  # (an unknown but sane field name is named in the answer, by design)
]


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth < 3 and roll < 0.1:
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if depth < 3 and roll < 0.2:
        return {rng.choice(_FIELDS): _random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    if roll < 0.3:
        return "".join(chr(rng.randint(0, 0x2FF)) for _ in range(rng.randint(0, 20)))
    if roll < 0.35:
        return rng.randint(-(10**25), 10**25)
    return rng.choice(_ATOMS)


def _random_body(rng: random.Random, real: dict[str, Any]) -> bytes:
    roll = rng.random()
    if roll < 0.1:
        return bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 40)))
    body = {rng.choice(_FIELDS): _random_value(rng) for _ in range(rng.randint(0, 4))}
    if roll < 0.6:  # often mostly valid, so the request reaches the datastore
        body = {**real, **dict(list(body.items())[:1])}
    raw = json.dumps(body).encode()
    if roll > 0.9:
        raw = raw[: rng.randint(0, len(raw))]  # truncated
    elif roll > 0.85:
        raw = raw.replace(b"0", b"NaN", 1)
    return raw


def test_fuzz_never_500(api: Api) -> None:
    rng = random.Random(20261122)
    agent = api.new_agent()
    key = api.new_key(agent)
    real: dict[str, dict[str, Any]] = {
        "agents/create": {"display_name": "fuzz"},
        "agents/get": {"agent_id": agent},
        "agents/update": {"agent_id": agent, "display_name": "renamed"},
        "agents/list": {"page_size": 3},
        "device/issue": {"agent_id": agent, "ttl_seconds": 3600},
        "device/list": {"agent_id": agent},
        "device/revoke": {"key_id": key["key_id"]},
        "settings/set": {"key": "rotation_grace_seconds", "value": 7},
    }
    routes = sorted(real)
    statuses: dict[int, int] = {}
    for case in range(200):
        route = rng.choice(routes)
        raw = _random_body(rng, real[route])
        headers = BRIDGE if rng.random() < 0.85 else {"x-agentpack-device-key": key["device_key"]}
        answer = post_raw(route, raw, headers)
        statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
        assert answer.status_code < 500, (case, route, raw[:200], answer.data)
        assert_request_id(answer)
        if answer.status_code >= 400:
            assert set(json.loads(answer.data)) == {"error", "error_description"}
            assert_no_echo(answer)
    # The loop exercised both refusals and successes.
    assert statuses.get(400, 0) > 20
    assert sum(n for s, n in statuses.items() if s < 300) > 10


def test_an_unknown_field_named_like_a_key_is_never_echoed() -> None:
    from tests.conftest import BRIDGE_KEY, Api

    for name in (BRIDGE_KEY, "apkd_short", "x" * 33):
        answer = Api().bridge("settings/list", {name: 1})
        assert answer.status_code == 400
        assert answer.get_json()["error_description"] == "unknown field"
        assert name not in answer.get_data(as_text=True)


def test_a_credential_with_a_stray_comma_is_malformed_not_ambiguous() -> None:
    from tests.conftest import Api

    answer = Api().call("settings/list", {}, {"x-agentpack-key": "garbage,"})
    assert answer.status_code == 401
