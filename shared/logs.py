"""Structured log lines for Cloud Logging: one JSON object per line on standard error.

Every record the process logs (the service's own, and a library's warning) is written by one
handler on the root logger as a JSON object that Cloud Logging reads as a structured entry:
``severity``, ``message``, ``logger``, and, for a line written while a request is answered, its
``request_id``, its ``route`` and the request's trace (``logging.googleapis.com/trace``). Each
request adds exactly one line of its own when it is answered (``request_line``): the HTTP outcome
in Cloud Logging's ``httpRequest`` shape and the verified caller's kind and IDs.

What a line never holds: a key, a token, a hash, a secret, a body, a query string, a header's
value other than a well-formed trace header's IDs and the user agent (with anything shaped like
a key or token blanked out), nor a stack trace. A record logged with an exception carries only
the exception's class name. The line is JSON-escaped ASCII, so a client's text cannot break it.
"""

from __future__ import annotations

import contextvars
import ipaddress
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from shared import config
from shared.principal import Principal

SERVICE_LOGGER = "agentpack"
TRACE_FIELD = "logging.googleapis.com/trace"
SPAN_FIELD = "logging.googleapis.com/spanId"
SAMPLED_FIELD = "logging.googleapis.com/trace_sampled"
FIELDS_ATTRIBUTE = "agentpack_fields"  # a record's structured fields (``extra={FIELDS_ATTRIBUTE: {...}}``)
USER_AGENT_MAX = 256
_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
STDERR = 2  # the file descriptor: pytest and the functions framework may replace ``sys.stderr``

# X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=OPTIONS, a 32-hex trace, a decimal span, options 0 or 1.
_CLOUD_TRACE = re.compile(r"([0-9a-fA-F]{32})(?:/([0-9]{1,20}))?(?:;o=([01]))?")
# W3C traceparent, version 00: 00-TRACE(32 hex)-PARENT(16 hex)-FLAGS(2 hex), lower case.
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
# What a user agent never shows in a log: our keys and anything shaped like a JWS or a long secret.
_CREDENTIAL_START = re.compile(r"apk[a-z]_|eyJ")
_SECRET_SHAPED = re.compile(r"apk[a-z]_[A-Za-z0-9]+|eyJ[A-Za-z0-9_=-]*(?:\.[A-Za-z0-9_=-]*)*|[A-Za-z0-9+/_=-]{32,}")


def severity_of_status(status: int) -> str:
    """INFO for an answer the service meant (2xx, 3xx, 4xx), WARNING when it could not serve now (429,
    503: capacity, a datastore or configuration it waits on), ERROR for any other 5xx (a bug)."""
    if status in (429, 503):
        return "WARNING"
    return "ERROR" if status >= 500 else "INFO"


@dataclass(frozen=True)
class Trace:
    trace_id: str  # 32 lower-case hex digits
    span_id: str | None  # 16 lower-case hex digits
    sampled: bool


def trace_of(headers: Mapping[str, Sequence[str]]) -> Trace | None:
    """The trace a request belongs to: W3C ``traceparent`` first, else ``X-Cloud-Trace-Context``.

    A header sent more than once, or not exactly of its format, is ignored: never echoed.
    """
    parent = headers.get("traceparent", [])
    if len(parent) == 1 and (match := _TRACEPARENT.fullmatch(parent[0].strip())) is not None:
        trace_id, span_id, flags = match.groups()
        if trace_id != "0" * 32 and span_id != "0" * 16:
            return Trace(trace_id, span_id, bool(int(flags, 16) & 1))
    cloud = headers.get("x-cloud-trace-context", [])
    if len(cloud) == 1 and (match := _CLOUD_TRACE.fullmatch(cloud[0].strip())) is not None:
        trace_id, span, options = match.groups()
        trace_id = trace_id.lower()
        span_number = int(span) if span is not None else 0
        if trace_id != "0" * 32 and span_number < 2**64:
            return Trace(trace_id, f"{span_number:016x}" if span_number else None, options == "1")
    return None


@dataclass
class RequestContext:
    """What every line logged while a request is answered carries, and what its own line reports."""

    route: str | None  # None: a path that names no route (the local router's 404)
    request_id: str
    trace: Trace | None
    caller: dict[str, str] = field(default_factory=dict)  # the verified caller's kind and IDs, once known

    def fields(self) -> dict[str, Any]:
        found: dict[str, Any] = {"request_id": self.request_id}
        if self.route is not None:
            found["route"] = self.route
        if self.trace is not None:
            found[TRACE_FIELD] = f"projects/{config.project()}/traces/{self.trace.trace_id}"
            if self.trace.span_id is not None:
                found[SPAN_FIELD] = self.trace.span_id
            found[SAMPLED_FIELD] = self.trace.sampled
        return found


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar("agentpack_request", default=None)


@contextmanager
def request(route: str | None, request_id: str, headers: Mapping[str, Sequence[str]]) -> Iterator[RequestContext]:
    """While a request is answered: every line logged in this context carries its ID, route and trace."""
    context = RequestContext(route, request_id, trace_of(headers))
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def note_caller(principal: Principal) -> None:
    """Record the verified caller of the current request (IDs only) for its request line."""
    context = _current.get()
    if context is None:
        return
    if principal.is_bridge:
        context.caller = {"kind": "bridge"}
    elif principal.kind == "user" and principal.user_id is not None:
        context.caller = {"kind": "user", "user_id": principal.user_id}
    elif principal.agent_id is not None:
        caller = {"kind": "agent", "via": principal.via, "agent_id": principal.agent_id}
        if principal.actor_id is not None and principal.actor_id != principal.agent_id:
            caller["actor_id"] = principal.actor_id
        if principal.delegation_id is not None:
            caller["delegation_id"] = principal.delegation_id
        context.caller = caller


def note_client(client_id: str) -> None:
    """Record the OAuth client the current request authenticated, once it has."""
    context = _current.get()
    if context is not None:
        context.caller = {"kind": "client", "client_id": client_id}


def credential_shaped(text: str) -> bool:
    """Whether a client's ID (``x-request-id``) starts like one of our keys or a JWS: never kept nor logged."""
    return _CREDENTIAL_START.match(text) is not None


def user_agent(sent: str) -> str:
    """A client's User-Agent for a log line: bounded, with anything shaped like a key or token blanked."""
    return _SECRET_SHAPED.sub("[redacted]", sent[:USER_AGENT_MAX])


def request_line(
    *,
    method: str,
    status: int,
    latency_seconds: float,
    error: str | None = None,
    remote_addr: str | None = None,
    user_agent_sent: str | None = None,
) -> None:
    """Log the one line of the current request: outcome, latency and caller (``httpRequest`` shape)."""
    context = _current.get()
    if context is None:
        return
    method = method if method in _METHODS else "OTHER"
    http_request: dict[str, Any] = {"requestMethod": method, "status": status, "latency": f"{latency_seconds:.6f}s"}
    if context.route is not None:  # the route's path: never what a client appended to it, nor a query string
        http_request["requestUrl"] = "/" + context.route
    remote_ip = _ip(remote_addr)
    if remote_ip is not None:
        http_request["remoteIp"] = remote_ip
    if user_agent_sent:
        http_request["userAgent"] = user_agent(user_agent_sent)
    fields: dict[str, Any] = {"httpRequest": http_request, "status": status}
    if error is not None:
        fields["error"] = error
    if context.caller:
        fields["caller"] = dict(context.caller)
    level = getattr(logging, severity_of_status(status))
    where = "/" + context.route if context.route is not None else "(no such route)"
    message = f"{method} {where} {status}" + (f" {error}" if error else "")
    logging.getLogger(SERVICE_LOGGER).log(level, message, extra={FIELDS_ATTRIBUTE: fields})


def _ip(address: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(address or ""))
    except ValueError:
        return None


class JsonFormatter(logging.Formatter):
    """A record as one line of JSON for Cloud Logging; never a traceback (only the exception's class)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": record.levelname if record.levelname in _SEVERITIES else "DEFAULT",
            "message": record.getMessage(),
            "logger": record.name,
        }
        context = _current.get()
        if context is not None:
            entry.update(context.fields())
        entry.update(getattr(record, FIELDS_ATTRIBUTE, None) or {})
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
        return json.dumps(entry, ensure_ascii=True, separators=(",", ":"), default=str)


_SEVERITIES = frozenset(("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))


class JsonLines(logging.Handler):
    """Writes each record as one JSON line on the process's standard error (file descriptor 2), unbuffered,
    whatever ``sys.stderr`` is replaced by, so Cloud Logging sees it at once."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
            os.write(STDERR, line.encode("ascii"))
        except Exception:  # noqa: BLE001 - a log line that cannot be written is dropped, never raised nor printed
            return

    def handleError(self, record: logging.LogRecord) -> None:
        return  # logging's default prints a traceback to stderr


_installed = False


def install() -> None:
    """Once per process: every record as a JSON line, and the service's own INFO lines kept."""
    global _installed
    if _installed:
        return
    _installed = True
    root = logging.getLogger()
    if not any(isinstance(handler, JsonLines) for handler in root.handlers):
        root.addHandler(JsonLines())
    service = logging.getLogger(SERVICE_LOGGER)
    if service.level == logging.NOTSET or service.level > logging.INFO:
        service.setLevel(logging.INFO)
