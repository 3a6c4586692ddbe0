"""The activation page a person opens to approve a device (``GET /activate``) and its files (``GET /activate/assets``).

The page is static HTML: no inline script or style, nothing of the request (the
``user_code`` parameter is read by the page's own script and only ever written as
text). What the script needs (the Firebase web config, the Auth emulator when one
is used, the API routes) is a JSON data block, which no browser runs. The Firebase
JS SDK (npm ``firebase``, pinned in package-lock.json) is served from our own
origin: its auth module imports the app module by its gstatic URL, and an import
map sends that URL to our copy. The import map is the one inline ``<script>``; the
Content-Security-Policy allows it by its SHA-256 alone, next to ``'self'``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from shared import config, errors, http

log = logging.getLogger("agentpack")

SDK_VERSION = "12.19.0"  # package.json pins the same: the import map names this exact version
GSTATIC = f"https://www.gstatic.com/firebasejs/{SDK_VERSION}/"
ASSETS: Mapping[str, str] = {  # the only files served, with their media types
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "firebase-app.js": "text/javascript; charset=utf-8",
    "firebase-auth.js": "text/javascript; charset=utf-8",
}
ASSET_CACHE = "public, max-age=300"
_EMULATOR_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}:[0-9]{1,5}|\[[0-9A-Fa-f:]{2,39}\]:[0-9]{1,5}")
GOOGLE_AUTH_ORIGINS = ("https://identitytoolkit.googleapis.com", "https://securetoken.googleapis.com")


def _base_path() -> str:
    """The issuer's path ('' at an origin's root): every URL of the page hangs below it."""
    return urlsplit(config.issuer()).path.rstrip("/")


def asset_url(name: str) -> str:
    return f"{_base_path()}/activate/assets?file={name}"


def emulator_origin() -> str | None:
    """``http://host:port`` of the Auth emulator named by ``FIREBASE_AUTH_EMULATOR_HOST``, else None."""
    host = os.environ.get("FIREBASE_AUTH_EMULATOR_HOST", "").strip()
    if not host:
        return None
    if not _EMULATOR_HOST.fullmatch(host):
        raise errors.ConfigRefused("FIREBASE_AUTH_EMULATOR_HOST must be host:port")
    return f"http://{host}"


def _data_block(value: object) -> str:
    """JSON safe inside a ``<script>`` element: no ``<``, ``>`` or ``&`` that could close or open a tag."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def import_map() -> str:
    sdk = ("firebase-app.js", "firebase-auth.js")
    return _data_block({"imports": {GSTATIC + name: asset_url(name) for name in sdk}})


def _sha256_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def page_config() -> dict[str, object]:
    """What the page's script reads: Firebase's web config (public by design), the emulator, the routes."""
    project = config.get().project_id
    base = _base_path()
    return {
        "firebase": {
            "apiKey": os.environ.get("AGENTPACK_FIREBASE_WEB_API_KEY", "").strip() or "demo-api-key",
            "authDomain": f"{project}.firebaseapp.com",
            "projectId": project,
        },
        "authEmulator": emulator_origin(),
        "lookup": f"{base}/activate/lookup",
        "decide": f"{base}/activate/decide",
    }


def content_security_policy(script_hashes: tuple[str, ...] = ()) -> str:
    emulator = emulator_origin()
    connect = ["'self'", *([emulator] if emulator else []), *GOOGLE_AUTH_ORIGINS]
    return "; ".join(
        [
            "default-src 'none'",
            "script-src " + " ".join(["'self'", *script_hashes]),
            "connect-src " + " ".join(connect),
            "style-src 'self'",
            "img-src 'self'",
            "form-action 'none'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ]
    )


def security_headers(csp: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
    }


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Approve a device · agentpack</title>
<link rel="stylesheet" href="{css}">
<script type="importmap">{import_map}</script>
<script type="application/json" id="activate-config">{config}</script>
<script type="module" src="{app}"></script>
</head>
<body>
<main>
<h1>Approve a device</h1>
<p class="lead">A program on one of your devices asks to act for you. Sign in, check the code it shows, then
approve or deny.</p>
<noscript><p class="message error">This page needs JavaScript to sign you in.</p></noscript>
<div id="message" class="message" role="status" aria-live="polite"></div>

<form id="sign-in-form" hidden novalidate>
<h2>Sign in</h2>
<label for="email">Email</label>
<input id="email" name="email" type="email" autocomplete="username" required>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button id="sign-in" type="submit">Sign in</button>
</form>

<p id="signed-in" hidden>Signed in as <strong id="who"></strong>.
<button id="sign-out" type="button" class="link">Sign out</button></p>

<form id="code-form" hidden novalidate>
<h2>Enter the code</h2>
<label for="user-code">Code shown on your device</label>
<input id="user-code" name="user_code" autocomplete="off" autocapitalize="characters" spellcheck="false"
 maxlength="16" placeholder="BCDF-GHJK" aria-describedby="code-hint" required>
<p id="code-hint" class="hint">8 letters, like BCDF-GHJK.</p>
<button id="continue" type="submit">Continue</button>
</form>

<section id="request" hidden aria-labelledby="request-title">
<h2 id="request-title">Check this request</h2>
<dl>
<dt>Code</dt><dd id="request-code"></dd>
<dt>Agent</dt><dd id="agent-name"></dd>
<dt>Tenant</dt><dd id="tenant"></dd>
<dt>Actions it asks for</dt><dd><ul id="actions"></ul></dd>
<dt>Code expires</dt><dd id="expires"></dd>
</dl>
<p>Approve only if your device shows this same code and you started this yourself.</p>
<div class="buttons">
<button id="approve" type="button">Approve</button>
<button id="deny" type="button" class="secondary">Deny</button>
</div>
</section>
</main>
</body>
</html>
"""


def page() -> http.Reply:
    """The page, the same for every request (nothing of the request is in it), and its headers."""
    imports = import_map()
    text = _PAGE.format(
        css=asset_url("app.css"), app=asset_url("app.js"), import_map=imports, config=_data_block(page_config())
    )
    csp = content_security_policy((_sha256_source(imports),))
    headers = {**security_headers(csp), "Cache-Control": "no-store"}
    return http.page(200, text.encode(), "text/html; charset=utf-8", headers)


def static_beside(main_file: str) -> Path:
    """The ``static/`` folder next to a function's main.py (in the checkout, and as staged)."""
    return Path(main_file).resolve().parent / "static"


def asset(directory: Path, query: Mapping[str, list[str]]) -> http.Reply:
    """One allow-listed file of ``directory`` by ``?file=``; any other name: 404."""
    names = query.get("file", [])
    if len(names) != 1 or names[0] not in ASSETS or set(query) != {"file"}:
        raise errors.NotFound("No such file.")
    name = names[0]
    try:
        body = (directory / name).read_bytes()
    except OSError:
        log.error("activate: the page's file %s is missing (scripts/setup installs it; stage after it)", name)
        raise errors.Unavailable() from None
    headers = {**security_headers("default-src 'none'; frame-ancestors 'none'"), "Cache-Control": ASSET_CACHE}
    headers["Cross-Origin-Resource-Policy"] = "same-origin"
    return http.page(200, body, ASSETS[name], headers)
