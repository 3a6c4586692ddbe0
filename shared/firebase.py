"""Firebase Authentication: the one module that imports firebase-admin.

A user's credential is a Firebase ID token. firebase-admin verifies it (the
signature against Google's published keys, cached by the library; issuer and
audience of this project; expiry). With ``FIREBASE_AUTH_EMULATOR_HOST`` set,
firebase-admin accepts the Auth emulator's unsigned tokens instead, as the
emulator intends: never set that variable in a deployment (ID tokens are then
refused). The library costs a noticeable import, paid only by requests that carry
an ID token.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from typing import Any

from shared import config, errors, jws, strictjson

log = logging.getLogger("agentpack")
REFUSED = "invalid ID token"


@functools.cache
def _app() -> Any:
    import firebase_admin
    from firebase_admin import credentials
    from google.auth.credentials import AnonymousCredentials

    class _NoCredential(credentials.Base):  # type: ignore[misc]
        """Verifying ID tokens needs no Google credential (the keys are public): never look for one."""

        def get_credential(self) -> Any:
            return AnonymousCredentials()  # type: ignore[no-untyped-call]

    options = {"projectId": config.get().project_id}
    return firebase_admin.initialize_app(credential=_NoCredential(), options=options, name="agentpack")


def verify_id_token(token: str) -> str:
    """The Firebase UID of a valid ID token; ``errors.TokenRefused`` for any other string."""
    if config.is_deployment() and os.environ.get("FIREBASE_AUTH_EMULATOR_HOST", "").strip():
        # firebase-admin would accept the emulator's unsigned tokens: never in a deployment.
        raise errors.ConfigRefused("FIREBASE_AUTH_EMULATOR_HOST is set in a deployment")
    from firebase_admin import auth, exceptions

    if type(token) is not str or len(token) > 8192 or not token.isascii() or token.count(".") != 2:
        raise errors.TokenRefused(REFUSED)
    try:  # a JWT's header is a JSON object: anything else never reaches the library
        header = strictjson.object_of(jws.b64decode(token[: token.find(".")]))
    except ValueError:
        header = None
    if header is None:
        raise errors.TokenRefused(REFUSED)
    try:
        claims = auth.verify_id_token(token, app=_app(), check_revoked=False, clock_skew_seconds=60)
    except auth.CertificateFetchError:
        log.warning("firebase: could not fetch the ID-token certificates")
        raise errors.Unavailable() from None
    except (ValueError, exceptions.FirebaseError):
        raise errors.TokenRefused(REFUSED) from None
    uid, exp = (claims.get("uid"), claims.get("exp")) if isinstance(claims, dict) else (None, None)
    if type(uid) is not str or not uid or type(exp) is not int or exp < time.time() - 60:  # emulated: exp unchecked
        raise errors.TokenRefused(REFUSED)
    return uid


def reset() -> None:
    """Forget the app (tests that change the project or the emulator)."""
    import firebase_admin

    if _app.cache_info().currsize:
        firebase_admin.delete_app(_app())
    _app.cache_clear()
