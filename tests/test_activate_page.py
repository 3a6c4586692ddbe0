"""The activation page and its files through the real functions (no browser): answers, headers, staging."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest

from agentpack import staging
from agentpack.functions_index import Function, all_functions
from tests.conftest import ROOT, function_client

STATIC = ROOT / "functions" / "activate_assets" / "static"


def _csp(header: str) -> dict[str, list[str]]:
    return {name: rest for name, *rest in (part.split() for part in header.split(";"))}


def test_the_page_is_the_same_html_for_every_request_with_a_strict_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FIREBASE_AUTH_EMULATOR_HOST", raising=False)
    client = function_client("activate")
    first = client.get("/?user_code=%22%3E%3Cscript%3Ealert(1)%3C/script%3E")
    second = client.get("/")
    assert first.status_code == 200 and first.content_type == "text/html; charset=utf-8"
    assert first.get_data() == second.get_data()  # nothing of the request is in the page
    html = first.get_data(as_text=True)
    policy = _csp(first.headers["Content-Security-Policy"])
    assert policy["default-src"] == ["'none'"]
    # Without an emulator, the page may talk only to us and to Firebase Authentication.
    assert policy["connect-src"] == [
        "'self'",
        "https://identitytoolkit.googleapis.com",
        "https://securetoken.googleapis.com",
    ]
    # The one inline script allowed is the import map, by its hash.
    import_map = re.search(r'<script type="importmap">(.*?)</script>', html, re.DOTALL)
    assert import_map is not None
    digest = base64.b64encode(hashlib.sha256(import_map.group(1).encode()).digest()).decode()
    assert policy["script-src"] == ["'self'", f"'sha256-{digest}'"]
    assert '"authEmulator":null' in html
    assert "Set-Cookie" not in first.headers
    assert first.headers["Referrer-Policy"] == "no-referrer"


def test_the_emulator_is_named_in_the_page_and_its_policy_only_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
    answer = function_client("activate").get("/")
    assert "http://127.0.0.1:9099" in _csp(answer.headers["Content-Security-Policy"])["connect-src"]
    assert '"authEmulator":"http://127.0.0.1:9099"' in answer.get_data(as_text=True)
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099; script-src *")
    refused = function_client("activate").get("/")
    assert refused.status_code == 503 and "script-src *" not in str(refused.headers)


def test_only_allow_listed_files_are_served_and_json_stays_the_default() -> None:
    client = function_client("activate_assets")
    answer = client.get("/?file=app.js")
    assert answer.status_code == 200
    assert answer.content_type == "text/javascript; charset=utf-8"
    assert answer.get_data() == (STATIC / "app.js").read_bytes()
    assert answer.headers["Cache-Control"] == "public, max-age=300"
    sdk = client.get("/?file=firebase-auth.js").get_data(as_text=True)
    assert "https://www.gstatic.com/firebasejs/12.19.0/firebase-app.js" in sdk  # what the import map redirects
    for query in ("", "?file=main.py", "?file=static/app.js", "?file=..%2Fmain.py", "?file=app.js&file=app.css"):
        refused = client.get("/" + query)
        assert refused.status_code == 404 and refused.content_type == "application/json", query
        assert refused.headers["Cache-Control"] == "no-store"
    assert client.post("/?file=app.js").status_code == 405


def test_staging_copies_the_files_the_page_needs_and_not_links(tmp_path: Path) -> None:
    [function] = [f for f in all_functions() if f.name == "activate_assets"]
    staged = staging.stage(function, tmp_path)
    for name in ("app.js", "app.css", "firebase-app.js", "firebase-auth.js"):
        copy = staged / "static" / name
        assert not copy.is_symlink() and copy.read_bytes() == (STATIC / name).read_bytes()
    assert {f.name for f in all_functions()} >= {"activate", "activate_assets"}
    [page] = [f for f in all_functions() if f.name == "activate"]
    assert (page.route, page.method) == ("activate", "GET")
    assert not (staging.stage(page, tmp_path) / "static").exists()


def test_staging_leaves_out_a_link_with_nothing_behind_it(tmp_path: Path) -> None:
    """A checkout without node_modules/ still stages (a deploy's dry run); the missing file is simply absent."""
    source = tmp_path / "src" / "pages"
    (source / "static").mkdir(parents=True)
    (source / "main.py").write_text("from shared import http\n")
    (source / "static" / "app.js").write_text("// ours\n")
    (source / "static" / "firebase-app.js").symlink_to(tmp_path / "node_modules" / "nowhere.js")
    function = Function(name="pages", route="pages", method="GET", source=source / "main.py")
    staged = staging.stage(function, tmp_path / "build")
    assert sorted(p.name for p in (staged / "static").iterdir()) == ["app.js"]
