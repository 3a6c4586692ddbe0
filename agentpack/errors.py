"""The exceptions of the client: one class per error code of the contract (API.md).

Every error the service answers becomes an instance of the class of its
``code``, carrying that code, the HTTP status, the service's description and
the request ID (the one the service echoed, else the one the client sent), so
a failure can be traced to its log lines and audit events::

    try:
        client.get_secret("db")
    except agentpack.NotFound:
        ...
    except agentpack.Unavailable as error:  # 503, cannot connect, or no answer in time
        log.warning("try later (request %s)", error.request_id)

``ConnectionFailed`` (and its ``TimedOut``) is an ``Unavailable`` that the
service never answered: its ``status`` is 0.
"""

from __future__ import annotations

from typing import ClassVar


class AgentpackError(Exception):
    """Base of everything this library raises on purpose."""


class ApiError(AgentpackError):
    """An error answer: ``code`` and ``status`` as API.md lists them."""

    default_code: ClassVar[str] = "error"
    default_status: ClassVar[int] = 0

    def __init__(self, code: str, status: int, description: str, request_id: str | None = None) -> None:
        self.code = code
        self.status = status
        self.description = description
        self.request_id = request_id
        super().__init__(code, status, description, request_id)

    def __str__(self) -> str:
        where = f" (request {self.request_id})" if self.request_id else ""
        return f"{self.code}: {self.description}{where}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status}, request_id={self.request_id!r})"


class InvalidRequest(ApiError):
    default_code, default_status = "invalid_request", 400


class AmbiguousCredentials(ApiError):
    default_code, default_status = "ambiguous_credentials", 400


class Unauthenticated(ApiError):
    default_code, default_status = "unauthenticated", 401


class Forbidden(ApiError):
    default_code, default_status = "forbidden", 403


class NotFound(ApiError):
    default_code, default_status = "not_found", 404


class MethodNotAllowed(ApiError):
    default_code, default_status = "method_not_allowed", 405


class Conflict(ApiError):
    default_code, default_status = "conflict", 409


class PayloadTooLarge(ApiError):
    default_code, default_status = "payload_too_large", 413


class UnsupportedMediaType(ApiError):
    default_code, default_status = "unsupported_media_type", 415


class RateLimited(ApiError):
    default_code, default_status = "rate_limited", 429


class Unavailable(ApiError):
    """The service, or what it depends on, cannot answer now; try later."""

    default_code, default_status = "unavailable", 503


class Internal(ApiError):
    """A bug in the service (500). It answers with no detail; quote the request ID."""

    default_code, default_status = "internal", 500


class ConnectionFailed(Unavailable):
    """No answer at all: the connection was refused or dropped, or the name does not resolve."""

    def __init__(self, url: str, reason: str, request_id: str | None = None) -> None:
        super().__init__("unavailable", 0, f"cannot reach {url}: {reason}", request_id)
        self.url = url
        self.reason = reason


class TimedOut(ConnectionFailed):
    """The service did not answer within the timeout. A write may or may not have happened."""


class UnexpectedResponse(ApiError):
    """An answer that is not the agentpack API's (a proxy's page, another server, a redirect)."""

    default_code = "unexpected_response"


BY_CODE: dict[str, type[ApiError]] = {
    cls.default_code: cls
    for cls in (
        InvalidRequest,
        AmbiguousCredentials,
        Unauthenticated,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        Conflict,
        PayloadTooLarge,
        UnsupportedMediaType,
        RateLimited,
        Unavailable,
        Internal,
    )
}


# A code this version does not know (a newer service) still gets the class of its status.
_BY_STATUS: dict[int, type[ApiError]] = {
    cls.default_status: cls for cls in BY_CODE.values() if cls is not AmbiguousCredentials
}


# ---------------------------------------------------------------- the OAuth endpoints' codes (RFC 6749 §5.2)
# Each is a subclass of the class of its status, so ``except InvalidRequest`` still catches them.


class InvalidClient(Unauthenticated):
    """Client authentication failed (always 401): unknown or disabled agent, wrong or dead key, bad assertion."""

    default_code = "invalid_client"


class InvalidGrant(InvalidRequest):
    """A bad, expired, revoked or spent refresh token (a spent one revokes its family), or a bad assertion."""

    default_code = "invalid_grant"


class UnauthorizedClient(InvalidRequest):
    default_code = "unauthorized_client"


class UnsupportedGrantType(InvalidRequest):
    default_code = "unsupported_grant_type"


class InvalidScope(InvalidRequest):
    """More scope than the client may have now: never narrowed in silence."""

    default_code = "invalid_scope"


class InvalidTarget(InvalidRequest):
    default_code = "invalid_target"


class InvalidDpopProof(InvalidRequest):
    default_code = "invalid_dpop_proof"


OAUTH_ERRORS: tuple[type[ApiError], ...] = (
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    InvalidTarget,
    InvalidDpopProof,
)
BY_CODE.update({cls.default_code: cls for cls in OAUTH_ERRORS})


def from_answer(status: int, code: str, description: str, request_id: str | None) -> ApiError:
    """The exception for an error answer of the contract's shape."""
    cls = BY_CODE.get(code) or _BY_STATUS.get(status) or ApiError
    return cls(code, status, description, request_id)
