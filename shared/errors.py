"""Every error the service answers with, each carrying its wire code and HTTP status.

Descriptions are fixed texts chosen here or by the raiser; they never echo
request input, keys, hashes or secret values.
"""

from __future__ import annotations


class ApiError(Exception):
    """Base of every error that becomes an HTTP answer."""

    code: str = "internal"
    status: int = 500
    default_description: str = "The server failed to answer this request."
    challenge: str | None = None  # a WWW-Authenticate value, for 401 answers

    def __init__(self, description: str | None = None) -> None:
        self.description = description or self.default_description
        super().__init__(self.description)

    def body(self) -> dict[str, str]:
        return {"error": self.code, "error_description": self.description}


class InvalidRequest(ApiError):
    code, status = "invalid_request", 400
    default_description = "The request body is not valid."


class AmbiguousCredentials(ApiError):
    code, status = "ambiguous_credentials", 400
    default_description = "Send exactly one primary credential."


class Unauthenticated(ApiError):
    code, status = "unauthenticated", 401
    # One text for missing, malformed, unknown, expired, revoked and disabled: no oracle.
    default_description = "A valid credential is required."
    challenge = 'Bearer realm="agentpack"'


class Forbidden(ApiError):
    code, status = "forbidden", 403
    default_description = "The credential may not perform this action."


class NotFound(ApiError):
    code, status = "not_found", 404
    default_description = "No such object."


class MethodNotAllowed(ApiError):
    code, status = "method_not_allowed", 405
    default_description = "This route answers POST only."


class Conflict(ApiError):
    code, status = "conflict", 409
    default_description = "The request conflicts with the current state."


class PayloadTooLarge(ApiError):
    code, status = "payload_too_large", 413
    default_description = "The request body is larger than 64 KiB."


class UnsupportedMediaType(ApiError):
    code, status = "unsupported_media_type", 415
    default_description = "The request body must be application/json."


class RateLimited(ApiError):
    code, status = "rate_limited", 429
    default_description = "Too many requests; retry later."

    def __init__(self, description: str | None = None, *, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.retry_after = retry_after  # whole seconds until a request would be counted again: Retry-After


class Unavailable(ApiError):
    code, status = "unavailable", 503
    default_description = "A backing service is unreachable; nothing was changed. Retry later."


class Internal(ApiError):
    """A bug. Answered with no detail; the cause is logged without request data."""


# ---------------------------------------------------------------- OAuth 2.0 (RFC 6749 §5.2, RFC 8628, RFC 8693)


class InvalidClient(ApiError):
    """Client authentication failed: one answer for every cause. Always 401 (RFC 6749 §5.2)."""

    code, status = "invalid_client", 401
    default_description = "Client authentication failed."

    def __init__(self, description: str | None = None, *, basic: bool = False) -> None:
        super().__init__(description)
        # A client that used HTTP Basic is told so in the challenge (RFC 6749 §5.2).
        self.challenge = 'Basic realm="agentpack"' if basic else None


class InvalidGrant(ApiError):
    code, status = "invalid_grant", 400
    default_description = "The grant is invalid, expired, revoked or was issued to another client."


class UnauthorizedClient(ApiError):
    code, status = "unauthorized_client", 400
    default_description = "This client may not use this grant or this token."


class UnsupportedGrantType(ApiError):
    code, status = "unsupported_grant_type", 400
    default_description = "This grant type is not supported."


class InvalidScope(ApiError):
    code, status = "invalid_scope", 400
    default_description = "The scope asked for exceeds what this client may have."


class InvalidTarget(ApiError):
    code, status = "invalid_target", 400
    default_description = "The resource is not an acceptable audience."


class AuthorizationPending(ApiError):
    code, status = "authorization_pending", 400
    default_description = "The user has not decided yet."


class SlowDown(ApiError):
    code, status = "slow_down", 400
    default_description = "Polling too fast: wait longer between requests."


class AccessDenied(ApiError):
    code, status = "access_denied", 400
    default_description = "The user denied the request."


class ExpiredToken(ApiError):
    code, status = "expired_token", 400
    default_description = "The device code has expired."


class InvalidDpopProof(ApiError):
    """RFC 9449 §5: a DPoP proof at the token endpoint that is malformed, stale, replayed or for another request."""

    code, status = "invalid_dpop_proof", 400
    default_description = "The DPoP proof is not valid for this request."


class ConfigError(Unavailable):
    """The deployment's configuration is refused: the service answers 503 rather than serve weaker."""

    default_description = "The service is misconfigured; nothing was changed."


class SecretStoreUnavailable(Unavailable):
    default_description = "The secret store is unreachable; nothing was changed. Retry later."


class IntegrityFailure(Unavailable):
    """A stored secret failed to open where it stands: tampered with or transplanted."""

    default_description = "The stored secret failed its integrity check; no value was returned."


class Contention(Unavailable):
    """A transaction that kept losing to concurrent ones on the same documents until the deadline."""

    default_description = "Too many concurrent changes to the same records; nothing was changed. Retry later."


class UnconfirmedChange(Unavailable):
    """The datastore took the commit but its answer was lost: the change landed whole, or not at all."""

    default_description = (
        "The datastore did not confirm the change: it was made in full or not at all. Check, then retry."
    )


class Refused(ValueError):
    """A parser refused its input. A plain exception, with no wire code: ``wire`` maps it to one.

    ``reason`` is written for an operator's log and names no input, key or secret.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class TokenRefused(Refused):
    """A bearer token that is malformed, forged, expired or otherwise not valid."""


class ConfigRefused(Refused):
    """A configuration value (keys, numbers, sources) the service will not serve with."""


class BodyRefused(Refused):
    """A request body that is not strict JSON; ``reason`` names the field, never its value."""


def wire(refusal: Refused) -> ApiError:
    """The one mapping of parser refusals to wire errors."""
    if isinstance(refusal, ConfigRefused):
        return ConfigError()
    if isinstance(refusal, BodyRefused):
        return InvalidRequest(refusal.reason)
    return Unauthenticated()  # one answer for every refused token: no oracle
