"""The device flow (RFC 8628) end to end in a real browser: the activation page, its headers, its refusals.

One ``scripts/serve`` for the module, on a free port with emulators of its own; Debian's chromium,
driven by Playwright. A program starts a device authorization for a public agent, a person opens
``verification_uri_complete``, signs in with Firebase Authentication (the Auth emulator), sees the
request and decides; the program polls ``/oauth/token``. A code's expiry is reached honestly: the
test writes the authorization's ``expires_at`` into the past in the server's own Firestore emulator
(the server runs in another process; its clock is never touched). Each test saves a screenshot of
every state the page reaches under its ``tmp_path``.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, sync_playwright

from tests.device_flow_service import PASSWORD, Person, Service
from tests.device_flow_service import service as service  # the fixture: this module's own server
from tests.local_server import post

CHROMIUM = "/usr/bin/chromium"
WAIT_MS = 15_000  # every wait on the page is bounded
WRONG = "That code is wrong, has expired or was already used"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/setup")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], timeout=60_000)
        try:
            yield launched
        finally:
            launched.close()


class Watched:
    """A page in a fresh browser context (its own IndexedDB: signed out), with what it did recorded."""

    def __init__(self, browser: Browser, shots: Path) -> None:
        self.context = browser.new_context()
        self.page: Page = self.context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.shots = shots
        self.dialogs: list[str] = []
        self.console: list[str] = []
        self.page.on("dialog", self._dialog)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.console.append(f"pageerror: {error}"))

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.console.append(f"{message.type}: {message.text}")

    def shot(self, name: str) -> None:
        self.shots.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)

    def message(self) -> str:
        return self.page.locator("#message").inner_text()

    def wait_message(self, text: str) -> str:
        self.page.wait_for_function(
            "text => document.getElementById('message').textContent.includes(text)", arg=text, timeout=WAIT_MS
        )
        return self.message()

    def sign_in(self, person: Person) -> None:
        self.page.wait_for_selector("#sign-in-form:not([hidden])")
        self.page.fill("#email", person.email)
        self.page.fill("#password", PASSWORD)
        self.page.click("#sign-in")
        self.page.wait_for_selector("#signed-in:not([hidden])")

    def problems(self) -> list[str]:
        """Console errors and warnings, but for answers the page expects (a wrong code's 404, the favicon's)."""
        return [line for line in self.console if not line.startswith("error: Failed to load resource:")]

    def close(self) -> None:
        assert self.context.cookies() == []  # no cookie of ours, nor of the SDK
        self.context.close()


@pytest.fixture
def watched(browser: Browser, tmp_path: Path) -> Iterator[Watched]:
    page = Watched(browser, tmp_path / "screenshots")
    try:
        yield page
    finally:
        page.close()


def _claims(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))  # only to read them


def test_a_person_approves_in_the_browser_and_the_program_gets_its_tokens_once(
    service: Service, watched: Watched
) -> None:
    agent = service.public_agent("Build bot")
    person = service.person()
    started = service.start(agent, "read")
    assert started["verification_uri"] == f"{service.base}/activate"
    assert service.poll(agent, started["device_code"])[1]["error"] == "authorization_pending"
    assert service.poll(agent, started["device_code"])[1]["error"] == "slow_down"  # faster than the interval

    watched.page.goto(started["verification_uri_complete"])
    watched.wait_message("Sign in to continue")
    assert watched.page.input_value("#user-code") == started["user_code"]  # pre-filled from the URL
    watched.shot("1-sign-in")
    watched.sign_in(person)
    watched.page.wait_for_selector("#request:not([hidden])")
    assert watched.page.inner_text("#agent-name") == "Build bot"
    assert watched.page.inner_text("#tenant") == "default"
    assert watched.page.locator("#actions li").all_inner_texts() == ["read"]
    assert watched.page.inner_text("#request-code") == started["user_code"]
    watched.shot("2-request")
    assert service.poll(agent, started["device_code"])[1]["error"] in ("authorization_pending", "slow_down")

    watched.page.click("#approve")
    assert "Approved. Build bot can now act for you" in watched.wait_message("Approved")
    assert watched.page.locator("#request").is_hidden()
    watched.shot("3-approved")

    status, tokens = service.poll(agent, started["device_code"])
    assert status == 200, tokens
    claims = _claims(tokens["access_token"])
    assert claims["sub"] == person.user_id and claims["act"]["sub"] == agent
    assert tokens["refresh_token"] and tokens["scope"] == "read"
    # The device code answered once.
    status, again = service.poll(agent, started["device_code"])
    assert (status, again["error"]) == (400, "invalid_grant")
    # Approving the same code again: it is no longer pending.
    assert service.as_person(person, "activate/decide", {"user_code": started["user_code"], "approve": True})[0] == 404
    assert watched.dialogs == [] and watched.problems() == []


def test_a_denial_reaches_the_program_as_access_denied(service: Service, watched: Watched) -> None:
    agent = service.public_agent("Deploy helper")
    person = service.person()
    started = service.start(agent)
    watched.page.goto(started["verification_uri"])  # no code in the URL: the person types it
    watched.sign_in(person)
    watched.wait_message("Enter the code your device shows")
    watched.page.fill("#user-code", started["user_code"].lower().replace("-", " "))  # as a person may type it
    watched.page.click("#continue")
    watched.page.wait_for_selector("#request:not([hidden])")
    assert watched.page.locator("#actions li").all_inner_texts() == ["read", "write"]
    watched.page.click("#deny")
    assert "Denied. Deploy helper was not given access" in watched.wait_message("Denied")
    watched.shot("denied")
    status, answer = service.poll(agent, started["device_code"])
    assert (status, answer["error"]) == (400, "access_denied")
    assert watched.dialogs == [] and watched.problems() == []


def test_a_wrong_code_an_expired_code_and_another_tenants_code_get_one_message(
    service: Service, watched: Watched
) -> None:
    agent = service.public_agent("Nightly sync")
    person = service.person()
    outsider = service.person(tenant_id="other-tenant")

    watched.page.goto(f"{service.base}/activate?user_code=BCDF-GHJK")  # well formed, never issued
    watched.sign_in(person)
    watched.wait_message(WRONG)
    assert watched.page.locator("#request").is_hidden()
    watched.shot("1-wrong-code")

    watched.page.fill("#user-code", "hello")  # not even a code: refused before any request
    watched.page.click("#continue")
    watched.wait_message("A code is 8 letters")
    watched.shot("2-malformed-code")

    expired = service.start(agent)
    service.expire(expired["device_code"])
    watched.page.fill("#user-code", expired["user_code"])
    watched.page.click("#continue")
    watched.wait_message(WRONG)
    watched.shot("3-expired-code")
    assert service.poll(agent, expired["device_code"])[1]["error"] == "expired_token"

    other = service.start(agent)  # a live code, but of an agent of another tenant than the person's
    watched.page.click("#sign-out")
    watched.sign_in(outsider)
    watched.page.fill("#user-code", other["user_code"])
    watched.page.click("#continue")
    watched.wait_message(WRONG)
    assert watched.page.locator("#request").is_hidden()
    watched.shot("4-other-tenant")
    assert service.poll(agent, other["device_code"])[1]["error"] == "authorization_pending"  # nothing decided
    assert watched.dialogs == [] and watched.problems() == []


def test_a_firebase_user_not_registered_here_is_told_so(service: Service, watched: Watched) -> None:
    agent = service.public_agent("Unseen")
    stranger = service.person(registered=False)  # signed up with Firebase, never made a user here
    started = service.start(agent)
    watched.page.goto(started["verification_uri_complete"])
    watched.sign_in(stranger)
    watched.wait_message("This account is not registered here")
    assert watched.page.locator("#request").is_hidden()
    watched.shot("not-registered")
    assert service.poll(agent, started["device_code"])[1]["error"] == "authorization_pending"


def test_guessing_codes_is_cut_off_after_five_wrong_ones(service: Service, watched: Watched) -> None:
    agent = service.public_agent("Guessed")
    person = service.person()
    real = service.start(agent)
    watched.page.goto(f"{service.base}/activate")
    watched.sign_in(person)
    for guess in ("BBBB-BBBB", "CCCC-CCCC", "DDDD-DDDD", "FFFF-FFFF", "GGGG-GGGG"):
        watched.page.fill("#user-code", guess)
        watched.page.click("#continue")
        watched.wait_message(WRONG)
        watched.page.evaluate("document.getElementById('message').textContent = ''")
    watched.page.fill("#user-code", real["user_code"])  # even the right code, now
    watched.page.click("#continue")
    watched.wait_message("Too many wrong codes")
    watched.shot("rate-limited")
    status, answer = service.as_person(person, "activate/lookup", {"user_code": real["user_code"]})
    assert (status, answer["error"]) == (429, "rate_limited")
    other = service.person()  # counted per person: another one is not held back
    assert service.as_person(other, "activate/lookup", {"user_code": real["user_code"]})[0] == 200


def test_a_forged_user_code_parameter_is_inert(service: Service, watched: Watched) -> None:
    person = service.person()
    forged = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
    url = f"{service.base}/activate?" + urllib.parse.urlencode({"user_code": forged})
    answer = watched.page.goto(url)
    assert answer is not None and answer.status == 200
    assert "alert(" not in answer.text()  # the server never echoes the parameter
    watched.sign_in(person)
    watched.wait_message("That is not a code")
    watched.shot("forged-code")
    assert watched.page.input_value("#user-code") == forged[:16]  # kept as text in the field, nothing else
    assert watched.page.locator("script").count() == 3  # the import map, the config, the page's module
    assert watched.page.locator("img").count() == 0
    assert "alert(" not in watched.page.evaluate("document.documentElement.outerHTML")
    assert watched.dialogs == []


def test_the_page_and_its_files_carry_strict_headers(service: Service) -> None:
    with urllib.request.urlopen(f"{service.base}/activate?user_code=QRST-VWXZ", timeout=10) as answer:
        headers, html = answer.headers, answer.read().decode()
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    csp = dict(part.strip().split(" ", 1) for part in headers["Content-Security-Policy"].split(";"))
    assert csp["default-src"] == "'none'"
    assert csp["script-src"].split()[0] == "'self'" and all(
        source.startswith("'sha256-") for source in csp["script-src"].split()[1:]
    )
    assert csp["connect-src"].split() == [
        "'self'",
        f"http://{service.auth}",
        "https://identitytoolkit.googleapis.com",
        "https://securetoken.googleapis.com",
    ]
    for name, value in {
        "style-src": "'self'",
        "img-src": "'self'",
        "form-action": "'none'",
        "frame-ancestors": "'none'",
        "base-uri": "'none'",
    }.items():
        assert csp[name] == value
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in headers
    assert "QRST" not in html  # the code is read by the page's script, never written by the server
    assert " style=" not in html and "<style" not in html and not re.search(r"\son[a-z]+=", html)
    inline = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.DOTALL)
    assert [attributes for attributes, text in inline if text] == [
        ' type="importmap"',
        ' type="application/json" id="activate-config"',
    ]

    for name, media in (("app.js", "text/javascript"), ("app.css", "text/css"), ("firebase-app.js", "text/javascript")):
        with urllib.request.urlopen(f"{service.base}/activate/assets?file={name}", timeout=10) as answer:
            assert answer.headers["Content-Type"] == f"{media}; charset=utf-8"
            assert answer.headers["Cache-Control"] == "public, max-age=300"
            assert answer.headers["X-Content-Type-Options"] == "nosniff"
            assert "Set-Cookie" not in answer.headers
            assert answer.read()
    for query in ("file=main.py", "file=../main.py", "file=app.js&file=app.css", "", "file=app.js&x=1"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{service.base}/activate/assets?{query}", timeout=10)
        assert refused.value.code == 404, query
    status, answer, _ = post(f"{service.base}/activate", {})
    assert status == 405


def test_the_browser_enforces_the_policy_and_the_sdk_needs_nothing_more(service: Service, watched: Watched) -> None:
    """The SDK works under the CSP (no violation reported while signing in and looking up), and an
    inline script the policy does not hash is refused by the browser itself."""
    person = service.person()
    watched.page.goto(f"{service.base}/activate")
    watched.sign_in(person)
    watched.wait_message("Enter the code")
    assert not [line for line in watched.console if "Content Security Policy" in line], watched.console
    watched.page.evaluate(
        """() => { const s = document.createElement('script'); s.textContent = 'window.injected = 1';
        document.body.appendChild(s); }"""
    )
    assert watched.page.evaluate("window.injected === undefined")
    assert any("Content Security Policy" in line for line in watched.console), watched.console
