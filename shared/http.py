"""The HTTP layer: the only module that knows Flask.

``endpoint`` wraps a function's pipeline. It answers 405/413/415 before
anything else, hands the pipeline a ``Call`` (headers and a lazily parsed,
strictly validated body), turns every ``ApiError`` into its wire answer, and
turns anything else into a bare ``500 internal`` whose log line names only the
exception type: never a stack trace, key or body. Every request is answered inside
``logs.request`` and logs exactly one JSON line of its own (``logs.request_line``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import re
import secrets
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import flask

from shared import errors, logs, schema, strictjson

log = logging.getLogger("agentpack")

MAX_BODY_BYTES = 64 * 1024
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_ERROR_CODE = re.compile(r"[a-z_]{1,64}")
M = TypeVar("M", bound=schema.Body)
F = TypeVar("F", bound=schema.Form)
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


@dataclass(frozen=True)
class Reply:
    """An answer: a JSON object by default; with ``content_type`` set (``page``), ``body`` is the bytes sent."""

    status: int
    body: Mapping[str, Any] | bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = JSON


@dataclass(frozen=True)
class Call:
    route: str
    request_id: str
    headers: Mapping[str, list[str]]  # lower-cased names, every value sent
    raw_body: bytes
    query: Mapping[str, list[str]] = field(default_factory=dict)  # the URL's query parameters, every value sent
    client_address: str = ""  # who sent it, as the platform says (``_client_address``): for rate limits

    def header(self, name: str) -> list[str]:
        return self.headers.get(name.lower(), [])

    def body(self, model: type[M]) -> M:
        return schema.parse(model, strictjson.body_object(self.raw_body))

    def form(self, model: type[F]) -> F:
        """An ``application/x-www-form-urlencoded`` body (RFC 6749 §3.2): a parameter sent twice is refused,
        unknown ones are ignored, every value is text."""
        return schema.parse(model, _form_object(self.raw_body))

    def peek(self, model: type[M]) -> M | None:
        """The body if it is valid, else None, without raising: only a hint for reads made before
        the credential is checked. The pipeline still calls ``body`` after the credential."""
        try:
            return self.body(model)
        except (errors.ApiError, errors.Refused):
            return None


def reply(status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> Reply:
    return Reply(status, body, headers or {})


def page(status: int, body: bytes, content_type: str, headers: Mapping[str, str] | None = None) -> Reply:
    """A non-JSON answer (an HTML page, a script): ``body`` as is, with its ``content_type``."""
    return Reply(status, body, headers or {}, content_type)


def _form_object(raw: bytes) -> dict[str, str]:
    try:
        pairs = urllib.parse.parse_qsl(raw.decode("ascii"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise errors.InvalidRequest("body: not a valid form") from None
    found: dict[str, str] = {}
    for name, value in pairs:
        if name in found:
            where = name if strictjson.is_sane_field(name) else "a parameter"
            raise errors.InvalidRequest(f"{where}: sent more than once")
        found[name] = value
    return found


def _request_id(request: flask.Request) -> str:
    sent = request.headers.get("x-request-id", "")
    kept = _REQUEST_ID.fullmatch(sent) and not logs.credential_shaped(sent)  # it is echoed and logged
    return sent if kept else "req_" + secrets.token_urlsafe(16)


def _is_media(content_type: str, expected: str) -> bool:
    media, _, params = content_type.partition(";")
    if media.strip().lower() != expected:
        return False
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return False
    return True


def _read_body(request: flask.Request, media: str) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise errors.PayloadTooLarge()
    raw = request.stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise errors.PayloadTooLarge()
    content_type = request.headers.get("content-type", "")
    if (raw.strip() or content_type) and not _is_media(content_type, media):
        raise errors.UnsupportedMediaType(f"The request body must be {media}.")
    return raw


def _headers(request: flask.Request) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        headers.setdefault(name.lower(), []).append(value)
    return headers


def _query(request: flask.Request) -> dict[str, list[str]]:
    return {name: request.args.getlist(name) for name in request.args}


def _client_address(request: flask.Request) -> str:
    """The first address of X-Forwarded-For, which Cloud Functions sets to the caller's; else the peer's."""
    forwarded = request.headers.get("x-forwarded-for", "").split(",", 1)[0].strip()
    return forwarded or request.remote_addr or ""


def _respond(result: Reply, request_id: str) -> flask.Response:
    if isinstance(result.body, bytes):
        response = flask.Response(result.body, status=result.status, content_type=result.content_type)
    else:
        text = json.dumps(result.body, separators=(",", ":"), ensure_ascii=False)
        response = flask.Response(text, status=result.status, mimetype=JSON)
    response.headers["x-request-id"] = request_id
    # Identity answers carry keys and secrets: nothing may cache them.
    response.headers["Cache-Control"] = "no-store"
    for name, value in result.headers.items():
        response.headers[name] = value
    return response


def _error_reply(error: errors.ApiError, method: str) -> Reply:
    headers = {"Allow": method} if isinstance(error, errors.MethodNotAllowed) else {}
    if error.challenge is not None:
        headers["WWW-Authenticate"] = error.challenge
    if isinstance(error, errors.RateLimited) and error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    return Reply(error.status, error.body(), headers)


Pipeline = Callable[[Call], Reply]
Handler = Callable[[flask.Request], flask.Response]


def endpoint(route: str, *, method: str = "POST", media: str = "application/json") -> Callable[[Pipeline], Handler]:
    """Make ``pipeline`` an HTTP Cloud Function serving ``route``; a POST body must be of ``media``."""

    def wrap(pipeline: Pipeline) -> Handler:
        @functools.wraps(pipeline)
        def handle(request: flask.Request) -> flask.Response:
            return _served(route, request, lambda call: _answer(pipeline, request, call, method, media))

        handle.route = route  # type: ignore[attr-defined]
        return handle

    return wrap


def unrouted(environ: dict[str, Any]) -> flask.Response:
    """The answer (a WSGI app) to a request whose path names no route (the local server's router): ``404``,
    with the request ID and the one log line every route's answer has, and never the path itself."""
    request = flask.Request(environ)
    return _served(None, request, lambda _: _error_reply(errors.NotFound("No such route."), request.method))


def _served(route: str | None, request: flask.Request, answer: Callable[[Call], Reply]) -> flask.Response:
    """``answer``'s reply as the response, inside the request's log context, and its one log line."""
    started = time.perf_counter()
    logs.install()
    request_id = _request_id(request)
    headers = _headers(request)
    with logs.request(route, request_id, headers):
        result = answer(Call(route or "", request_id, headers, b"", _query(request), _client_address(request)))
        response = _respond(result, request_id)
        logs.request_line(
            method=request.method,
            status=result.status,
            latency_seconds=time.perf_counter() - started,
            error=_error_code(result),
            remote_addr=request.remote_addr,
            user_agent_sent=request.headers.get("user-agent"),
        )
    return response


def _answer(pipeline: Pipeline, request: flask.Request, call: Call, method: str, media: str) -> Reply:
    """The pipeline's reply, or the wire answer of what it raised; a bug is a bare 500, logged by class only."""
    try:
        if request.method != method:
            raise errors.MethodNotAllowed(f"This route answers {method} only.")
        raw = _read_body(request, media) if method == "POST" else b""
        return pipeline(dataclasses.replace(call, raw_body=raw))  # ``call`` as named, with its body once read
    except errors.Refused as refusal:
        if isinstance(refusal, errors.ConfigRefused):  # logged here, once; never a token or body refusal
            log.error("configuration refused: %s", refusal.reason)
        return _error_reply(errors.wire(refusal), method)
    except errors.ApiError as error:
        if error.status >= 500:
            log.warning("answered %s", error.code)
        return _error_reply(error, method)
    except Exception as exc:  # noqa: BLE001 - the one place a bug becomes a bare 500
        frame = exc.__traceback__
        while frame is not None and frame.tb_next is not None:
            frame = frame.tb_next
        where = f"{frame.tb_frame.f_code.co_filename}:{frame.tb_lineno}" if frame else "?"
        log.error("internal error %s at %s", type(exc).__name__, where)  # the class and place: never its values
        return _error_reply(errors.Internal(), method)


def _error_code(result: Reply) -> str | None:
    code = result.body.get("error") if isinstance(result.body, Mapping) and result.status >= 400 else None
    return code if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else None
