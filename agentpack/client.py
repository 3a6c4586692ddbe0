"""The HTTP client: one method per route of API.md, typed answers, typed errors.

Standard library only (``http.client``): no runtime dependency, no proxy and
no redirect is ever followed, so a credential goes to ``base_url`` and nowhere
else. Every call carries a timeout and a fresh ``x-request-id``.

Retries. A call is sent again only when sending it again cannot change what
the first attempt did:

* the read routes (``READ_ROUTES``) are retried on ``503``, ``502``, ``504``
  and ``429`` answers, on a timeout and on a dropped connection;
* every route, writes included, is retried when the connection could not be
  opened (refused, or no connection within the timeout): the request never left;
* a write is never retried once it was sent. API.md promises that a ``503``
  wrote nothing *half*: a change and its audit event commit together or not at
  all. It does not promise that nothing was written: a commit can land just as
  the datastore deadline passes, and the answer is then ``503`` with the change
  made. Sending ``agents/create`` or ``device/issue`` again would make a second
  agent, or a second key whose plaintext is lost. The caller, who knows whether
  the write is safe to repeat, decides.

Backoff is exponential (``backoff`` doubling per attempt, at most
``max_backoff``, with jitter; a ``Retry-After`` of the answer is honoured up to
``max_backoff``), for at most ``max_attempts`` attempts in all.
"""

from __future__ import annotations

import base64
import copy
import http.client
import json
import random
import re
import secrets
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypeVar

from agentpack import config, errors, models
from agentpack.models import (
    Agent,
    AgentPage,
    Allowed,
    AuditEvent,
    AuditPage,
    CapabilityRecord,
    Delegation,
    DelegationRevocation,
    Delegations,
    Introspection,
    IssuedKey,
    KeyList,
    KeyRevocation,
    LeakReport,
    MalformedAnswer,
    Page,
    RelationsWritten,
    RelationTuple,
    RelationTuples,
    Secret,
    SecretDeletion,
    SecretInfo,
    SecretList,
    SettingChange,
    Settings,
    TokenAnswer,
    TokenRevocation,
    User,
    UserGrant,
    UserGrantRevocation,
    UserGrants,
    UserPage,
)

__version__ = "0.1.0"
DEFAULT_URL = config.DEFAULT_URL
DEFAULT_TIMEOUT = 10.0
MAX_ANSWER_BYTES = 16 * 1024 * 1024

READ_ROUTES = frozenset({
    "agents/get", "agents/list", "device/list", "delegate/list",
    "secrets/get", "secrets/list", "settings/list", "audit/list",
    "users/get", "users/list", "users/delegate/list", "authz/read", "authz/check",
})  # fmt: skip
_RETRY_STATUSES = frozenset({429, 502, 503, 504})
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
_HEADERS: dict[config.Kind, str] = {
    "bridge_key": "x-agentpack-key",
    "device_key": "x-agentpack-device-key",
    "token": "Authorization",
}

A = TypeVar("A")
FORM = "application/x-www-form-urlencoded"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFE_SECONDS = 300
_DEVICE_KEY_AGENT = re.compile(r"apkd_([0-9A-Za-z]{22})[0-9A-Za-z]{22}")
ClientAuth = Literal["basic", "post"]


def agent_of_device_key(device_key: str) -> str | None:
    """The agent a device key belongs to (its text names its key ID, which names its agent), or None."""
    match = _DEVICE_KEY_AGENT.match(device_key)
    return "agt_" + match.group(1) if match else None


def client_assertion(private_key_seed: bytes, key_id: str, audience: str, *, now: float | None = None) -> str:
    """An RFC 7523 client assertion (EdDSA JWT) signed by a key pair registered with ``device/issue public_key``.

    ``iss`` = ``sub`` = the key's agent, ``aud`` = ``audience``, five minutes of life, a fresh ``jti``.
    Signing needs the service library's Ed25519 code (installed with this package), imported only here.
    """
    from shared import jws  # the signing code, only for the key-pair calls

    agent_id = _agent_of_key_id(key_id)
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": agent_id,
        "sub": agent_id,
        "aud": audience,
        "iat": issued,
        "exp": issued + ASSERTION_LIFE_SECONDS,
        "jti": secrets.token_urlsafe(24),
    }
    return jws.sign(private_key_seed, {"alg": "EdDSA", "typ": "JWT", "kid": key_id}, claims)


def _agent_of_key_id(key_id: str) -> str:
    match = re.fullmatch(r"dk_([0-9A-Za-z]{22})[0-9A-Za-z]{22}", key_id)
    if match is None:
        raise ValueError("key_id: a device key ID (dk_...)")
    return "agt_" + match.group(1)


def new_request_id() -> str:
    return "req_" + secrets.token_urlsafe(16)


def route_path(base_path: str, host: str, route: str) -> str:
    """The URL path of a route under ``base_path``.

    Locally (``scripts/serve``) and behind a gateway a route is served at its
    API.md path. Deployed straight to ``*.cloudfunctions.net``, each route is
    its own function, named after its folder: ``agents/create`` is ``/agents-create``.
    """
    name = route.replace("/", "-") if host.endswith(".cloudfunctions.net") else route
    return base_path.rstrip("/") + "/" + name


def _check_credential(name: str, value: str) -> str:
    # A newline or space would corrupt the header, and http.client would raise a bare ValueError.
    if not value or len(value) > 8192 or not value.isascii() or not value.isprintable() or " " in value:
        raise ValueError(f"{name}: not a credential (empty, too long, or not printable ASCII without spaces)")
    return value


class _NotSent(Exception):
    """The connection could not be opened: nothing reached the service."""

    def __init__(self, reason: str, *, retry: bool, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.retry, self.timed_out = reason, retry, timed_out


class _Lost(Exception):
    """The request may have reached the service, but no whole answer came back."""

    def __init__(self, reason: str, *, timed_out: bool) -> None:
        super().__init__(reason)
        self.reason, self.timed_out = reason, timed_out


class Client:
    """A client of one agentpack identity service, with exactly one primary credential.

    ``Client("https://...", device_key=key)``; ``delegation`` (beside a device
    key or token) makes the secrets calls act for the grantor. ``timeout`` is
    per attempt, for connecting and for each read of the answer.
    ``allow_insecure_http`` permits plain ``http://`` to a host other than this
    machine (keys would cross the network in clear text). ``oauth_only=True`` allows
    no credential at all: such a client can only use the OAuth calls that carry their
    own (a key pair's assertion: ``private_key_jwt_token``, ``jwt_bearer_token``).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        bridge_key: str | None = None,
        device_key: str | None = None,
        token: str | None = None,
        delegation: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_attempts: int = 3,
        backoff: float = 0.25,
        max_backoff: float = 4.0,
        allow_insecure_http: bool = False,
        user_agent: str | None = None,
        oauth_only: bool = False,
    ) -> None:
        offered: tuple[tuple[config.Kind, str | None], ...] = (
            ("bridge_key", bridge_key),
            ("device_key", device_key),
            ("token", token),
        )
        given = [(kind, value) for kind, value in offered if value is not None]
        self._kind: config.Kind | None = None
        self._credential = ""
        if given or not oauth_only:
            if len(given) != 1:
                raise ValueError("give exactly one of bridge_key, device_key or token")
            self._kind, value = given[0]
            self._credential = _check_credential(self._kind, value)
        if delegation is not None and self._kind == "bridge_key":
            raise ValueError("a delegation is sent beside a device key or a token, never the bridge key")
        self._delegation = _check_credential("delegation", delegation) if delegation is not None else None

        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("base_url: an http:// or https:// URL with a host")
        if parts.query or parts.fragment:
            raise ValueError("base_url: no query or fragment")
        if parts.scheme == "http" and parts.hostname not in _LOOPBACK and not allow_insecure_http:
            raise ValueError(
                "base_url: use https:// for a host other than this machine "
                "(allow_insecure_http, or AGENTPACK_ALLOW_INSECURE_HTTP=1 for the command, to override)"
            )
        try:
            port = parts.port
        except ValueError:
            raise ValueError("base_url: the port is not a number") from None
        if timeout <= 0 or max_attempts < 1 or backoff < 0 or max_backoff < 0:
            raise ValueError("timeout must be positive, max_attempts at least 1, backoffs not negative")
        self.base_url = base_url.rstrip("/")
        self._scheme, self._host, self._port, self._path = parts.scheme, parts.hostname, port, parts.path
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.user_agent = user_agent or f"agentpack-python/{__version__}"
        self._sleep: Callable[[float], None] = time.sleep
        self._tls = ssl.create_default_context() if parts.scheme == "https" else None

    @classmethod
    def from_env(
        cls,
        needs: config.Needs = "any",
        *,
        role: config.Role | None = None,
        env: Mapping[str, str] | None = None,
        **options: Any,
    ) -> Client:
        """A client built from ``AGENTPACK_*`` variables (see ``agentpack.config`` for the rule).

        Sends nothing, so it never raises an ``ApiError``. It raises ``ConfigurationError``
        when no credential for ``needs``/``role`` is set, a variable and its ``_FILE`` twin
        are both set, or a key file cannot be read (missing, over 16 KiB, not ASCII, empty);
        ``ValueError`` for a malformed ``AGENTPACK_URL``, plain ``http://`` to another host
        (unless ``allow_insecure_http=True``), a credential or delegation that cannot be a
        header value, or a bad ``timeout``/``max_attempts``/backoff; ``TypeError`` for an
        unknown keyword in ``options``. docs/cli.md lists them too.
        """
        credential = config.choose(needs, role, env)
        kind, value = credential.kind, credential.value
        return cls(
            config.url(env),
            bridge_key=value if kind == "bridge_key" else None,
            device_key=value if kind == "device_key" else None,
            token=value if kind == "token" else None,
            delegation=config.delegation(env) if kind != "bridge_key" else None,
            **options,
        )

    @property
    def credential_kind(self) -> config.Kind | None:
        """``bridge_key``, ``device_key`` or ``token`` (None: an ``oauth_only`` client without one)."""
        return self._kind

    @property
    def delegation(self) -> str | None:
        return self._delegation

    def with_delegation(self, delegation: str | None) -> Client:
        """The same client, acting through ``delegation`` (or through none)."""
        if delegation is not None and self._kind == "bridge_key":
            raise ValueError("a delegation is sent beside a device key or a token, never the bridge key")
        other = copy.copy(self)
        other._delegation = _check_credential("delegation", delegation) if delegation is not None else None
        return other

    def __repr__(self) -> str:
        return f"Client({self.base_url!r}, credential={self._kind!r}, delegation={self._delegation!r})"

    # ------------------------------------------------------------ agents

    def create_agent(
        self,
        display_name: str,
        *,
        tenant_id: str | None = None,
        scopes: Sequence[str] | None = None,
        public: bool | None = None,
    ) -> Agent:
        """``agents/create`` (bridge key). ``scopes``: the most its OAuth access tokens may carry."""
        body = {
            "display_name": display_name,
            "tenant_id": tenant_id,
            "scopes": _scope_list(scopes),
            "public": public,
        }
        return self._call("agents/create", body, Agent)

    def get_agent(self, agent_id: str | None = None) -> Agent:
        """``agents/get``: any agent with the bridge key; the caller itself with an agent credential."""
        return self._call("agents/get", {"agent_id": agent_id}, Agent)

    def list_agents(
        self, *, tenant_id: str | None = None, page_size: int | None = None, page_token: str | None = None
    ) -> AgentPage:
        """``agents/list`` (bridge key): one page, in ID order."""
        body = {"tenant_id": tenant_id, "page_size": page_size, "page_token": page_token}
        return self._call("agents/list", body, AgentPage)

    def iter_agents(self, *, tenant_id: str | None = None, page_size: int | None = None) -> Iterator[Agent]:
        """Every agent, page after page."""
        return _pages(lambda token: self.list_agents(tenant_id=tenant_id, page_size=page_size, page_token=token))

    def update_agent(
        self,
        agent_id: str,
        *,
        display_name: str | None = None,
        disabled: bool | None = None,
        scopes: Sequence[str] | None = None,
        public: bool | None = None,
    ) -> Agent:
        """``agents/update`` (bridge key). ``disabled=True`` suspends every credential of the agent at once;
        ``scopes`` replaces the agent's scopes (tokens already issued are held to the new ones)."""
        body = {
            "agent_id": agent_id,
            "display_name": display_name,
            "disabled": disabled,
            "scopes": _scope_list(scopes),
            "public": public,
        }
        return self._call("agents/update", body, Agent)

    # ------------------------------------------------------------ device keys

    def issue_key(
        self,
        agent_id: str | None = None,
        *,
        label: str | None = None,
        ttl_seconds: int | None = None,
        replaces_key_id: str | None = None,
        scopes: Sequence[str] | None = None,
        public_key: str | None = None,
    ) -> IssuedKey:
        """``device/issue``. The answer's ``device_key`` is the only time the key is shown.

        With ``replaces_key_id`` this is a rotation: the old key stays valid for
        the ``rotation_grace_seconds`` setting (see ``agentpack.rotation``).
        ``scopes`` narrows the key (a subset of the agent's); ``public_key`` (base64url
        of a raw Ed25519 public key) registers a key pair for ``private_key_jwt`` and
        the jwt-bearer grant instead: the answer then has no ``device_key``.
        """
        body = {
            "agent_id": agent_id,
            "label": label,
            "ttl_seconds": ttl_seconds,
            "replaces_key_id": replaces_key_id,
            "scopes": _scope_list(scopes),
            "public_key": public_key,
        }
        return self._call("device/issue", body, IssuedKey)

    def revoke_key(self, key_id: str) -> KeyRevocation:
        """``device/revoke``. Revoking twice answers the first ``revoked_at``."""
        return self._call("device/revoke", {"key_id": key_id}, KeyRevocation)

    def list_keys(self, agent_id: str | None = None) -> KeyList:
        """``device/list``: an agent's keys, oldest first, revoked and expired included."""
        return self._call("device/list", {"agent_id": agent_id}, KeyList)

    # ------------------------------------------------------------ delegations

    def delegate(self, to_agent: str, scope: Sequence[str], ttl_seconds: int) -> Delegation:
        """``delegate``: let ``to_agent`` call the ``scope`` routes for the caller, for ``ttl_seconds``."""
        if isinstance(scope, str):
            raise TypeError("scope: a list of route names, such as ['secrets/get']")
        body = {"to_agent": to_agent, "scope": list(scope), "ttl_seconds": ttl_seconds}
        return self._call("delegate", body, Delegation)

    def revoke_delegation(self, delegation_id: str) -> DelegationRevocation:
        """``delegate/revoke``: by the grantor, the grantee or the bridge key."""
        return self._call("delegate/revoke", {"delegation_id": delegation_id}, DelegationRevocation)

    def list_delegations(self) -> Delegations:
        """``delegate/list``: what the calling agent granted and received."""
        return self._call("delegate/list", {}, Delegations)

    # ------------------------------------------------------------ users, their grants, relations

    def create_user(self, firebase_uid: str, *, tenant_id: str | None = None, display_name: str | None = None) -> User:
        """``users/create`` (bridge key): register a Firebase account as a user (``409`` if it already is)."""
        body = {"firebase_uid": firebase_uid, "tenant_id": tenant_id, "display_name": display_name}
        return self._call("users/create", body, User)

    def get_user(self, user_id: str | None = None) -> User:
        """``users/get``: any user with the bridge key (``user_id`` required); a signed-in user itself."""
        return self._call("users/get", {"user_id": user_id}, User)

    def list_users(
        self, *, tenant_id: str | None = None, page_size: int | None = None, page_token: str | None = None
    ) -> UserPage:
        """``users/list`` (bridge key): one page."""
        body = {"tenant_id": tenant_id, "page_size": page_size, "page_token": page_token}
        return self._call("users/list", body, UserPage)

    def iter_users(self, *, tenant_id: str | None = None, page_size: int | None = None) -> Iterator[User]:
        """Every user, page after page."""
        return _pages(lambda token: self.list_users(tenant_id=tenant_id, page_size=page_size, page_token=token))

    def update_user(self, user_id: str, *, display_name: str | None = None, disabled: bool | None = None) -> User:
        """``users/update`` (bridge key). ``disabled=True`` holds at once for the user's tokens, grants and checks."""
        body = {"user_id": user_id, "display_name": display_name, "disabled": disabled}
        return self._call("users/update", body, User)

    def grant_user_delegation(
        self,
        agent_id: str,
        actions: Sequence[str],
        *,
        ttl_seconds: int | None = None,
        user_id: str | None = None,
    ) -> UserGrant:
        """``users/delegate``: make ``agent_id`` the user's ``delegate_of`` for ``actions`` (of read, write,
        delete, share). The bridge key names the user (``user_id``); a signed-in user grants for itself.
        One grant per user and agent: granting again replaces it."""
        if isinstance(actions, str):
            raise TypeError("actions: a list of actions, such as ['read']")
        body = {"agent_id": agent_id, "actions": list(actions), "ttl_seconds": ttl_seconds, "user_id": user_id}
        return self._call("users/delegate", body, UserGrant)

    def revoke_user_delegation(self, grant_id: str) -> UserGrantRevocation:
        """``users/delegate/revoke``: the bridge key, the user, or the agent (its device key)."""
        return self._call("users/delegate/revoke", {"grant_id": grant_id}, UserGrantRevocation)

    def list_user_delegations(self) -> UserGrants:
        """``users/delegate/list``: a user's grants given, or an agent's grants held (never the bridge key)."""
        return self._call("users/delegate/list", {}, UserGrants)

    def write_relations(
        self,
        writes: Sequence[RelationTuple] = (),
        deletes: Sequence[RelationTuple] = (),
        *,
        tenant_id: str | None = None,
    ) -> RelationsWritten:
        """``authz/write``: all or nothing, at most 100 tuples in all. The bridge key names ``tenant_id``;
        an agent whose scopes hold ``authz:write`` writes in its own tenant."""
        body = {
            "writes": [_tuple(item) for item in writes],
            "deletes": [_tuple(item) for item in deletes],
            "tenant_id": tenant_id,
        }
        return self._call("authz/write", body, RelationsWritten)

    def read_relations(self, resource: str, *, tenant_id: str | None = None) -> RelationTuples:
        """``authz/read``: the tuples of ``resource`` (bridge key with ``tenant_id``, or ``authz:read``)."""
        return self._call("authz/read", {"resource": resource, "tenant_id": tenant_id}, RelationTuples)

    def check(
        self,
        action: str,
        resource: str,
        *,
        subject: str | None = None,
        on_behalf_of: str | None = None,
        token: str | None = None,
        tenant_id: str | None = None,
    ) -> Allowed:
        """``authz/check``: may ``subject`` (or the holder of access ``token``) do ``action`` on ``resource``?
        ``on_behalf_of`` (``user:usr_…``): the agent acts for that user. Give ``subject`` or ``token``."""
        if (subject is None) == (token is None):
            raise ValueError("give exactly one of subject or token")
        body = {
            "subject": subject,
            "action": action,
            "resource": resource,
            "on_behalf_of": on_behalf_of,
            "token": token,
            "tenant_id": tenant_id,
        }
        return self._call("authz/check", body, Allowed)

    # ------------------------------------------------------------ secrets

    def put_secret(self, name: str, value: str) -> SecretInfo:
        """``secrets/put``: a new version of the secret."""
        return self._call("secrets/put", {"name": name, "value": value}, SecretInfo)

    def get_secret(self, name: str) -> Secret:
        """``secrets/get``: the value. ``repr()`` of the answer leaves the value out."""
        return self._call("secrets/get", {"name": name}, Secret)

    def list_secrets(self) -> SecretList:
        """``secrets/list``: names and versions, never values."""
        return self._call("secrets/list", {}, SecretList)

    def delete_secret(self, name: str) -> SecretDeletion:
        """``secrets/delete``."""
        return self._call("secrets/delete", {"name": name}, SecretDeletion)

    # ------------------------------------------------------------ settings, capability tokens, audit

    def list_settings(self) -> Settings:
        """``settings/list``: every allow-listed setting (any credential)."""
        return self._call("settings/list", {}, Settings)

    def set_setting(self, key: str, value: int) -> SettingChange:
        """``settings/set`` (bridge key)."""
        return self._call("settings/set", {"key": key, "value": value}, SettingChange)

    def record_capability(self, *, jti: str, sub: str, scope: str, iat: int, exp: int, kid: str) -> CapabilityRecord:
        """``capability/record`` (bridge key): the claims of a minted token, never the token."""
        body = {"jti": jti, "sub": sub, "scope": scope, "iat": iat, "exp": exp, "kid": kid}
        return self._call("capability/record", body, CapabilityRecord)

    def list_audit(
        self,
        *,
        agent_id: str | None = None,
        action: str | None = None,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> AuditPage:
        """``audit/list`` (bridge key): one page of events, newest first."""
        body = {"agent_id": agent_id, "action": action, "page_size": page_size, "page_token": page_token}
        return self._call("audit/list", body, AuditPage)

    def iter_audit(
        self, *, agent_id: str | None = None, action: str | None = None, page_size: int | None = None
    ) -> Iterator[AuditEvent]:
        """Every matching event, newest first, page after page."""
        return _pages(
            lambda token: self.list_audit(agent_id=agent_id, action=action, page_size=page_size, page_token=token)
        )

    # ------------------------------------------------------------ OAuth 2.0 (the agent as a client)

    @property
    def issuer(self) -> str:
        """The OAuth issuer this client assumes: the service URL (as AGENTPACK_ISSUER is locally)."""
        return self.base_url

    def _client_auth(self, auth: ClientAuth, client_id: str | None) -> tuple[dict[str, str], dict[str, str]]:
        """(headers, form parameters) of client_secret_basic or client_secret_post with the device key."""
        if self._kind != "device_key":
            raise ValueError("client_secret_basic and client_secret_post take a device key as the secret")
        agent_id = client_id or agent_of_device_key(self._credential)
        if agent_id is None:
            raise ValueError("client_id: the device key does not name its agent; give client_id")
        if auth == "basic":
            pair = f"{urllib.parse.quote_plus(agent_id)}:{urllib.parse.quote_plus(self._credential)}"
            return {"Authorization": "Basic " + base64.b64encode(pair.encode("ascii")).decode("ascii")}, {}
        if auth == "post":
            return {}, {"client_id": agent_id, "client_secret": self._credential}
        raise ValueError("auth: 'basic' or 'post'")

    def client_credentials_token(
        self,
        scope: str | Sequence[str] | None = None,
        *,
        resource: str | None = None,
        auth: ClientAuth = "basic",
        client_id: str | None = None,
    ) -> TokenAnswer:
        """An access token for the agent (``grant_type=client_credentials``), the device key as the secret.

        ``scope`` (a space-separated string or a list): default all the agent may have; more than that is
        ``InvalidScope``, never narrowed in silence. ``resource``: the token's audience (default the issuer).
        ``client_id`` defaults to the device key's own agent. No refresh token.
        """
        headers, form = self._client_auth(auth, client_id)
        body = {"grant_type": "client_credentials", "scope": _scope(scope), "resource": resource, **form}
        return self._form("oauth/token", body, headers, TokenAnswer)

    def private_key_jwt_token(
        self,
        private_key_seed: bytes,
        key_id: str,
        scope: str | Sequence[str] | None = None,
        *,
        resource: str | None = None,
    ) -> TokenAnswer:
        """``client_credentials`` authenticated with ``private_key_jwt``: an assertion signed by a key pair
        registered with ``device/issue public_key`` (``key_id``), no secret sent. Any credential of this
        client is not used."""
        assertion = client_assertion(private_key_seed, key_id, self.issuer + "/oauth/token")
        body = {
            "grant_type": "client_credentials",
            "scope": _scope(scope),
            "resource": resource,
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": assertion,
        }
        return self._form("oauth/token", body, {}, TokenAnswer)

    def jwt_bearer_token(
        self,
        private_key_seed: bytes,
        key_id: str,
        scope: str | Sequence[str] | None = None,
        *,
        resource: str | None = None,
    ) -> TokenAnswer:
        """The agent "login" (RFC 7523 §2.1): an access token and a refresh token, from an assertion signed
        by the key pair ``key_id``. Keep the refresh token secret: it is single-use, see ``refresh``."""
        assertion = client_assertion(private_key_seed, key_id, self.issuer + "/oauth/token")
        body = {"grant_type": JWT_BEARER, "assertion": assertion, "scope": _scope(scope), "resource": resource}
        return self._form("oauth/token", body, {}, TokenAnswer)

    def refresh(
        self,
        refresh_token: str,
        scope: str | Sequence[str] | None = None,
        *,
        private_key_seed: bytes | None = None,
        key_id: str | None = None,
        auth: ClientAuth = "basic",
    ) -> TokenAnswer:
        """A new access token and a new refresh token; ``refresh_token`` is spent (using it again revokes
        the whole family). The client authenticates as on every grant: with the key pair if given, else
        with the device key."""
        body: dict[str, str | None] = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "scope": _scope(scope),
        }
        headers = self._authenticate(body, private_key_seed, key_id, auth, "/oauth/token")
        return self._form("oauth/token", body, headers, TokenAnswer)

    def introspect(
        self, token: str, *, private_key_seed: bytes | None = None, key_id: str | None = None
    ) -> Introspection:
        """RFC 7662: whether ``token`` (access or refresh) is live, and its claims. The caller is the
        bridge key, or an agent (device key, or key pair) seeing its own tenant's tokens."""
        body: dict[str, str | None] = {"token": token}
        if self._kind == "bridge_key" and private_key_seed is None:
            headers = {"x-agentpack-key": self._credential}
        else:
            headers = self._authenticate(body, private_key_seed, key_id, "basic", "/oauth/introspect")
        return self._form("oauth/introspect", body, headers, Introspection, is_read=True)

    def revoke_token(
        self, token: str, *, private_key_seed: bytes | None = None, key_id: str | None = None
    ) -> TokenRevocation:
        """RFC 7009: revoke an access token, or a refresh token and its whole family, as the client it was
        issued to. Unknown and expired tokens are fine; another client's token is ``UnauthorizedClient``."""
        body: dict[str, str | None] = {"token": token}
        headers = self._authenticate(body, private_key_seed, key_id, "basic", "/oauth/revoke")
        return self._form("oauth/revoke", body, headers, TokenRevocation)

    def report_leak(self, keys: Sequence[str]) -> LeakReport:
        """Report leaked keys (1 to 100 strings): live device keys and refresh tokens are revoked, a live
        bridge key is reported. Sends no credential (any client may report, an ``oauth_only`` one too); the
        answer is the same whichever keys were real. Safe to repeat, so it is retried like a read."""
        payload = json.dumps({"keys": list(keys)}, separators=(",", ":")).encode("utf-8")
        return self._exchange("keys/report-leak", payload, LeakReport, headers={}, is_read=True)

    def _authenticate(
        self,
        body: dict[str, str | None],
        private_key_seed: bytes | None,
        key_id: str | None,
        auth: ClientAuth,
        path: str,
    ) -> dict[str, str]:
        if private_key_seed is not None:
            if key_id is None:
                raise ValueError("key_id: the key pair's key ID, beside its private key")
            body["client_assertion_type"] = CLIENT_ASSERTION_TYPE
            body["client_assertion"] = client_assertion(private_key_seed, key_id, self.issuer + path)
            return {}
        headers, form = self._client_auth(auth, None)
        body.update(form)
        return headers

    def _form(
        self,
        route: str,
        body: Mapping[str, str | None],
        headers: Mapping[str, str],
        answer: type[A],
        *,
        is_read: bool = False,
    ) -> A:
        payload = urllib.parse.urlencode({k: v for k, v in body.items() if v is not None}).encode("ascii")
        return self._exchange(route, payload, answer, content_type=FORM, headers=headers, is_read=is_read)

    # ------------------------------------------------------------ the exchange

    def _call(self, route: str, body: dict[str, Any], answer: type[A]) -> A:
        # Optional fields the caller left out are left out of the body, as the contract expects.
        # UTF-8 rather than \u escapes: a secret of secret_max_bytes must still fit the 64 KiB body limit.
        text = json.dumps({k: v for k, v in body.items() if v is not None}, separators=(",", ":"), ensure_ascii=False)
        try:
            payload = text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("a text argument is not valid Unicode (a lone surrogate)") from None
        if self._kind is None:
            raise ValueError("this client holds no credential: use an access token as Client(token=...)")
        credential = {_HEADERS[self._kind]: f"Bearer {self._credential}" if self._kind == "token" else self._credential}
        if self._delegation is not None:
            credential["x-agentpack-delegation"] = self._delegation
        return self._exchange(route, payload, answer, headers=credential, is_read=route in READ_ROUTES)

    def _exchange(
        self,
        route: str,
        payload: bytes,
        answer: type[A],
        *,
        headers: Mapping[str, str],
        is_read: bool,
        content_type: str = "application/json",
    ) -> A:
        request_id = new_request_id()
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            try:
                status, answer_headers, raw = self._send(route, payload, request_id, content_type, headers)
            except _NotSent as failure:
                error: errors.ApiError = self._connection_error(failure.reason, failure.timed_out, request_id)
                may_retry = failure.retry
            except _Lost as failure:
                error = self._connection_error(failure.reason, failure.timed_out, request_id)
                may_retry = is_read
            else:
                answer_id = answer_headers.get("x-request-id") or request_id
                if 200 <= status < 300:
                    return self._parse(status, answer_headers, raw, answer_id, answer)
                error = self._error(status, answer_headers, raw, answer_id)
                may_retry = is_read and status in _RETRY_STATUSES
                retry_after = _seconds(answer_headers.get("retry-after"))
            if not may_retry or attempt >= self.max_attempts:
                raise error
            delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.max_backoff))
            self._sleep(delay)

    def _connection(self) -> http.client.HTTPConnection:
        if self._tls is not None:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout, context=self._tls)
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)

    def _send(
        self, route: str, payload: bytes, request_id: str, content_type: str, extra: Mapping[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        headers = {
            "Content-Type": content_type,
            "Accept": "application/json",
            "User-Agent": self.user_agent,
            "x-request-id": request_id,
            **extra,
        }
        connection = self._connection()
        try:
            try:
                connection.connect()
            except TimeoutError:
                raise _NotSent(f"no connection within {self.timeout:g} s", retry=True, timed_out=True) from None
            except ConnectionRefusedError:
                raise _NotSent("connection refused", retry=True) from None
            except socket.gaierror:
                raise _NotSent("the host name does not resolve", retry=False) from None
            except ssl.SSLError as failure:
                raise _NotSent(f"TLS failed ({failure.reason or 'handshake'})", retry=False) from None
            except OSError as failure:
                raise _NotSent(failure.strerror or type(failure).__name__, retry=False) from None
            try:
                connection.request("POST", route_path(self._path, self._host, route), body=payload, headers=headers)
                response = connection.getresponse()
                raw = response.read(MAX_ANSWER_BYTES + 1)
            except TimeoutError:
                raise _Lost(f"no answer within {self.timeout:g} s", timed_out=True) from None
            except (http.client.HTTPException, OSError) as failure:
                reason = getattr(failure, "strerror", None) or type(failure).__name__
                raise _Lost(f"the connection broke ({reason})", timed_out=False) from None
            answer_headers = {name.lower(): value for name, value in response.getheaders()}
            return response.status, answer_headers, raw
        finally:
            connection.close()

    def _connection_error(self, reason: str, timed_out: bool, request_id: str) -> errors.ConnectionFailed:
        cls = errors.TimedOut if timed_out else errors.ConnectionFailed
        return cls(self.base_url, reason, request_id)

    def _parse(
        self,
        status: int,
        headers: Mapping[str, str],
        raw: bytes,
        request_id: str,
        answer: type[A],
    ) -> A:
        data = _json_object(raw)
        if data is None:
            raise self._unexpected(status, headers, request_id)
        try:
            return models.parse(answer, data, request_id)
        except MalformedAnswer as problem:
            raise errors.UnexpectedResponse(
                "unexpected_response", status, f"the answer does not fit the contract: {problem}", request_id
            ) from None

    def _error(self, status: int, headers: Mapping[str, str], raw: bytes, request_id: str) -> errors.ApiError:
        data = _json_object(raw)
        if data is not None and isinstance(data.get("error"), str) and isinstance(data.get("error_description"), str):
            return errors.from_answer(status, data["error"], data["error_description"], request_id)
        # Not the service speaking: a load balancer, a proxy, another server at that URL.
        if status in (502, 503, 504):
            return errors.Unavailable("unavailable", status, f"HTTP {status} from in front of the service", request_id)
        if status == 429:
            return errors.RateLimited("rate_limited", status, "HTTP 429 from in front of the service", request_id)
        return self._unexpected(status, headers, request_id)

    def _unexpected(self, status: int, headers: Mapping[str, str], request_id: str) -> errors.UnexpectedResponse:
        if 300 <= status < 400:
            where = headers.get("location", "elsewhere")
            description = f"HTTP {status} redirects to {where}; point the client at the service itself"
        else:
            kind = headers.get("content-type", "no content type")
            description = f"HTTP {status} ({kind}) is not an agentpack answer; is {self.base_url} the service?"
        return errors.UnexpectedResponse("unexpected_response", status, description, request_id)


def _tuple(item: RelationTuple) -> dict[str, str]:
    if not isinstance(item, RelationTuple):
        raise TypeError("a relation tuple: RelationTuple(resource, relation, subject)")
    return {"resource": item.resource, "relation": item.relation, "subject": item.subject}


def _scope_list(scopes: Sequence[str] | None) -> list[str] | None:
    if isinstance(scopes, str):
        raise TypeError("scopes: a list of scope strings, such as ['secrets/get']")
    return list(scopes) if scopes is not None else None


def _scope(scope: str | Sequence[str] | None) -> str | None:
    """A scope parameter: a space-separated string, or a list joined with spaces."""
    if scope is None or isinstance(scope, str):
        return scope
    return " ".join(scope)


def _pages(fetch: Callable[[str | None], Page[A]]) -> Iterator[A]:
    token: str | None = None
    while True:
        page = fetch(token)
        yield from page.items
        token = page.next_page_token
        if token is None:
            return


def _json_object(raw: bytes) -> dict[str, Any] | None:
    if len(raw) > MAX_ANSWER_BYTES:
        return None
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _seconds(value: str | None) -> float | None:
    """A ``Retry-After`` in seconds (the HTTP-date form is ignored)."""
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())
