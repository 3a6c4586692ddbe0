"""Server-side keys from Google Secret Manager, through its real client library.

Read once per instance (callers cache) and never written to disk or logs.
The client costs about 0.4 s to import, so it is imported here, on first use,
and only by deployments that read their keys from Secret Manager.
``AGENTPACK_SECRET_MANAGER_ENDPOINT`` points the client at a local stand-in
speaking the service's REST protocol over plain HTTP (tests; there is no
Secret Manager emulator).
"""

from __future__ import annotations

import logging
import os

from shared import errors

log = logging.getLogger("agentpack")

BRIDGE_KEY_HASHES = "agentpack-bridge-key-hashes"
SECRETS_KEYS = "agentpack-secrets-keys"
TOKEN_SIGNING_KEYS = "agentpack-token-signing-keys"  # noqa: S105 - a secret's name, not its value
TIMEOUT_SECONDS = 10.0
# The client retries an unavailable Secret Manager for 60 s by default: a request at a cold start then
# hung a minute. Retry briefly instead; the next request tries again (nothing is cached until read).
RETRY_SECONDS = 2.0


def access(project: str, secret: str) -> str:
    """The latest version of ``secret`` as text."""
    from google.api_core import exceptions as gexc
    from google.api_core import retry
    from google.cloud import secretmanager_v1

    endpoint = os.environ.get("AGENTPACK_SECRET_MANAGER_ENDPOINT", "").strip()
    if endpoint:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud.secretmanager_v1.services.secret_manager_service.transports.rest import (
            SecretManagerServiceRestTransport,
        )

        host, scheme = endpoint.removeprefix("http://"), "http"
        anonymous = AnonymousCredentials()  # type: ignore[no-untyped-call]
        transport = SecretManagerServiceRestTransport(host=host, credentials=anonymous, url_scheme=scheme)
        client = secretmanager_v1.SecretManagerServiceClient(transport=transport)
    else:
        client = secretmanager_v1.SecretManagerServiceClient()
    name = f"projects/{project}/secrets/{secret}/versions/latest"
    try:
        brief = retry.Retry(initial=0.1, maximum=0.5, timeout=RETRY_SECONDS, predicate=retry.if_transient_error)
        response = client.access_secret_version(name=name, timeout=TIMEOUT_SECONDS, retry=brief)
        return str(response.payload.data.decode("utf-8"))
    except (gexc.GoogleAPIError, OSError, UnicodeDecodeError) as exc:
        log.error("secret manager: could not read %s (%s)", secret, type(exc).__name__)
        raise errors.SecretStoreUnavailable() from None
