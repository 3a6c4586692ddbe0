"""The agentpack command: every route of the service, and the offline operator work.

Credentials come from the environment, never from arguments (which land in
shell history): AGENTPACK_BRIDGE_KEY_FILE, AGENTPACK_DEVICE_KEY_FILE or
AGENTPACK_TOKEN_FILE (or the same variables without _FILE), and
AGENTPACK_DELEGATION for the secrets commands; the service is AGENTPACK_URL
(default http://127.0.0.1:8000). Of those set, operator commands and commands
either side may run use the bridge key, else the device key, else the token;
agent commands use the device key, else the token, else the bridge key.
--as-bridge or --as-agent uses only that side. Secret values are read from
standard input or a file, never from arguments.

Exit codes: 0 done; 1 the command's own failure (output could not be written,
or reseal left records behind); 2 usage (bad arguments, no credential);
3 refused by the service (a 4xx answer); 4 unavailable (503, cannot connect, no
answer in time, or no agentpack service at that URL); 5 the service failed (500).
Errors go to standard error as error: <code>: <description> (request <id>).
"""

from __future__ import annotations

import argparse
import base64
import getpass
import json
import os
import re
import secrets
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from agentpack import config, errors, rotation
from agentpack.client import DEFAULT_TIMEOUT, Client, __version__
from agentpack.config import ConfigurationError, Credential
from agentpack.models import AuditEvent, DeviceKey, IssuedKey, Page, format_time, to_dict

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED, EXIT_UNAVAILABLE, EXIT_INTERNAL = 0, 1, 2, 3, 4, 5
DELEGABLE_ROUTES = ("secrets/get", "secrets/put", "secrets/list", "secrets/delete")
_DURATION = re.compile(r"([0-9]+)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
ROOT = Path(__file__).resolve().parent.parent


class UsageError(Exception):
    """A problem with what was asked, found before anything was sent: exit 2."""


def exit_code(error: errors.ApiError) -> int:
    """3 for a refusal, 4 when the service cannot answer (or is not there), 5 for its bugs."""
    if isinstance(error, errors.Unavailable | errors.UnexpectedResponse):
        return EXIT_UNAVAILABLE
    if 400 <= error.status < 500:
        return EXIT_REFUSED
    return EXIT_INTERNAL


# ---------------------------------------------------------------- small parsers


def duration(text: str) -> int:
    """Seconds from ``3600``, ``90s``, ``15m``, ``12h`` or ``7d`` (an argparse type)."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError("a duration such as 3600, 90s, 15m, 12h or 7d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _scopes(values: Sequence[str]) -> list[str]:
    # "--scope secrets/get --scope secrets/list", "secrets/get,secrets/list" and "secrets/get secrets/list" all work.
    return [route for value in values for route in re.split(r"[\s,]+", value) if route]


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# ---------------------------------------------------------------- output


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, list | tuple):
        return ",".join(_text(item) for item in value) or "-"
    if isinstance(value, dict):
        return " ".join(f"{key}={_text(item)}" for key, item in value.items())
    return str(value)


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], out: IO[str]) -> None:
    cells = [[_text(cell) for cell in row] for row in rows]
    widths = [max([len(header), *(len(row[i]) for row in cells)]) for i, header in enumerate(headers)]
    for row in [[header.upper() for header in headers], *cells]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(), file=out)


def _record(pairs: Sequence[tuple[str, Any]], out: IO[str]) -> None:
    width = max((len(name) for name, _ in pairs), default=0)
    for name, value in pairs:
        print(f"{name.ljust(width)}  {_text(value)}", file=out)


def _pairs(answer: Any) -> list[tuple[str, Any]]:
    assert is_dataclass(answer)
    return [(f.name, getattr(answer, f.name)) for f in fields(answer) if not f.metadata.get("answer")]


def _expires_in(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    seconds = int((moment - now).total_seconds())
    if seconds <= 0:
        return "expired"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [f"{days}d"] * bool(days) + [f"{hours}h"] * bool(hours) + [f"{minutes}m"] * bool(minutes)
    return " ".join(parts[:2]) or f"{seconds}s"


# ---------------------------------------------------------------- files holding keys


class _PrivateFile:
    """A file for a key, opened (mode 0600) *before* the key exists, so a key is never made and then lost.

    ``replace``: write beside the target and rename over it (rotating a key file in place);
    otherwise an existing file is never overwritten.
    """

    def __init__(self, path: str, *, replace: bool) -> None:
        self.path = Path(path)
        self._target = self.path
        if replace:
            self._target = self.path.with_name(f".{self.path.name}.{secrets.token_hex(6)}.tmp")
        try:
            self._fd = os.open(self._target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise UsageError(f"{path} already exists; refusing to overwrite it") from None
        except OSError as error:
            raise UsageError(f"cannot write {path}: {error.strerror or error}") from None
        self._replace = replace

    def write(self, text: str) -> None:
        with os.fdopen(self._fd, "w", encoding="ascii") as file:
            file.write(text)
        if self._replace:
            os.replace(self._target, self.path)

    def discard(self) -> None:
        os.close(self._fd)
        self._target.unlink(missing_ok=True)


def _read_input(path: str | None, prompt: str) -> bytes:
    """The bytes of ``path``, or of standard input (``-`` or no path); a terminal is asked without echo."""
    if path is not None and path != "-":
        try:
            return Path(path).read_bytes()
        except OSError as error:
            raise UsageError(f"cannot read {path}: {error.strerror or error}") from None
    if sys.stdin.isatty():
        return getpass.getpass(prompt).encode("utf-8")
    return sys.stdin.buffer.read()


def _source_tree() -> None:
    """Make the service's own modules (shared/, scripts/) importable: the offline commands reuse them."""
    if (ROOT / "shared" / "keys.py").is_file():
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        return
    raise UsageError("this command needs the agentpack-identity source tree (shared/); run it from a checkout")


# ---------------------------------------------------------------- the context of one command


@dataclass
class Context:
    args: argparse.Namespace
    out: IO[str] = field(default_factory=lambda: sys.stdout)
    err: IO[str] = field(default_factory=lambda: sys.stderr)
    credential: Credential | None = None
    needs: config.Needs = "any"
    delegation: str | None = None

    @property
    def json(self) -> bool:
        return bool(self.args.json)

    def client(self, needs: config.Needs, *, delegated: bool = False) -> Client:
        self.needs = needs
        self.credential = credential = config.choose(needs, self.args.role)
        delegation = None
        if delegated and credential.kind != "bridge_key":
            delegation = self.delegation = getattr(self.args, "delegation", None) or config.delegation()
        timeout = self.args.timeout
        if timeout is None:
            try:
                timeout = float(os.environ.get("AGENTPACK_TIMEOUT", "") or DEFAULT_TIMEOUT)
            except ValueError:
                raise UsageError("AGENTPACK_TIMEOUT must be a number of seconds") from None
        kind, value = credential.kind, credential.value
        url = self.args.url or config.url()
        try:
            return Client(
                url,
                bridge_key=value if kind == "bridge_key" else None,
                device_key=value if kind == "device_key" else None,
                token=value if kind == "token" else None,
                delegation=delegation,
                timeout=timeout,
                allow_insecure_http=os.environ.get("AGENTPACK_ALLOW_INSECURE_HTTP") == "1",
            )
        except ValueError as problem:
            text = str(problem).replace("base_url:", f"the service URL {url}:", 1)
            where = f" (the {credential.name} from {credential.source})" if text.startswith(kind) else ""
            raise UsageError(f"{text}{where}") from None

    def print_json(self, data: Any) -> None:
        print(json.dumps(data, indent=2, ensure_ascii=False), file=self.out)

    def show(self, answer: Any, human: Callable[[], None] | None = None) -> int:
        if self.json:
            self.print_json(to_dict(answer))
        elif human is not None:
            human()
        else:
            _record(_pairs(answer), self.out)
        return EXIT_OK

    def note(self, text: str) -> None:
        print(text, file=self.err)


Handler = Callable[[Context], int]


# ---------------------------------------------------------------- agents


def agents_create(ctx: Context) -> int:
    return ctx.show(ctx.client("bridge").create_agent(ctx.args.display_name, tenant_id=ctx.args.tenant))


def agents_get(ctx: Context) -> int:
    return ctx.show(ctx.client("any").get_agent(ctx.args.agent_id))


def _paged(ctx: Context, fetch: Callable[[int, str | None], Page[Any]], what: str) -> tuple[list[Any], str | None]:
    """Pages until ``--limit`` items (or every item with ``--all``), from ``--page-token`` on."""
    items: list[Any] = []
    token: str | None = ctx.args.page_token
    while True:
        size = 200 if ctx.args.all else max(1, min(200, ctx.args.limit - len(items)))
        page = fetch(size, token)
        items += page.items
        token = page.next_page_token
        if token is None or (not ctx.args.all and len(items) >= ctx.args.limit):
            break
    if token is not None and not ctx.json:
        ctx.note(f"more {what}: add --page-token {token} (or --all)")
    return items, token


def agents_list(ctx: Context) -> int:
    client = ctx.client("bridge")
    agents, token = _paged(
        ctx,
        lambda size, token: client.list_agents(tenant_id=ctx.args.tenant, page_size=size, page_token=token),
        "agents",
    )
    if ctx.json:
        ctx.print_json({"agents": [to_dict(agent) for agent in agents], "next_page_token": token})
        return EXIT_OK
    rows = [(a.agent_id, a.display_name, a.tenant_id, a.disabled, a.created_at) for a in agents]
    _table(("agent_id", "display_name", "tenant_id", "disabled", "created_at"), rows, ctx.out)
    return EXIT_OK


def agents_update(ctx: Context) -> int:
    return ctx.show(ctx.client("bridge").update_agent(ctx.args.agent_id, display_name=ctx.args.name))


def agents_disable(ctx: Context) -> int:
    return ctx.show(ctx.client("bridge").update_agent(ctx.args.agent_id, disabled=True))


def agents_enable(ctx: Context) -> int:
    return ctx.show(ctx.client("bridge").update_agent(ctx.args.agent_id, disabled=False))


# ---------------------------------------------------------------- device keys


def _hand_over_key(ctx: Context, device_key: str, out: _PrivateFile | None) -> str:
    """Put the new key in its file, or return it for printing; say it is shown only once."""
    if out is None:
        ctx.note(
            "The device key is shown only this once: store it now (e.g. in the file AGENTPACK_DEVICE_KEY_FILE names)."
        )
        return device_key
    out.write(device_key + "\n")
    return f"written to {out.path} (mode 0600)"


def _key_pairs(issued: IssuedKey, shown: str) -> list[tuple[str, Any]]:
    return [
        ("key_id", issued.key_id),
        ("agent_id", issued.agent_id),
        ("label", issued.label),
        ("created_at", issued.created_at),
        ("expires_at", issued.expires_at),
        ("device_key", shown),
    ]


def keys_issue(ctx: Context) -> int:
    client = ctx.client("any")
    out = _PrivateFile(ctx.args.out, replace=False) if ctx.args.out else None
    try:
        issued = client.issue_key(ctx.args.agent, label=ctx.args.label, ttl_seconds=ctx.args.ttl)
    except BaseException:
        if out is not None:
            out.discard()
        raise
    shown = _hand_over_key(ctx, issued.device_key, out)
    if ctx.json:
        data = to_dict(issued)
        if out is not None:
            del data["device_key"]
            data["device_key_file"] = str(out.path)
        ctx.print_json(data)
        return EXIT_OK
    _record(_key_pairs(issued, shown), ctx.out)
    return EXIT_OK


def keys_revoke(ctx: Context) -> int:
    return ctx.show(ctx.client("any").revoke_key(ctx.args.key_id))


def _key_rows(keys: Iterable[DeviceKey], now: datetime) -> list[tuple[Any, ...]]:
    return [(k.key_id, k.label, k.status(now), k.created_at, k.expires_at, k.revoked_at) for k in keys]


def keys_list(ctx: Context) -> int:
    answer = ctx.client("any").list_keys(ctx.args.agent)
    now = datetime.now(UTC)
    headers = ("key_id", "label", "status", "created_at", "expires_at", "revoked_at")
    return ctx.show(answer, lambda: _table(headers, _key_rows(answer.keys, now), ctx.out))


def keys_rotate(ctx: Context) -> int:
    client = ctx.client("any")
    # Rotating usually replaces the key in the very file that holds it: write beside it, then rename.
    out = _PrivateFile(ctx.args.out, replace=True) if ctx.args.out else None
    try:
        done = rotation.rotate_key(
            client, ctx.args.key_id, agent_id=ctx.args.agent, label=ctx.args.label, ttl_seconds=ctx.args.ttl
        )
    except BaseException:
        if out is not None:
            out.discard()
        raise
    shown = _hand_over_key(ctx, done.new_key.device_key, out)
    old_until = done.old_key.expires_at if done.old_key is not None else None
    if ctx.json:
        new = to_dict(done.new_key)
        if out is not None:
            del new["device_key"]
            new["device_key_file"] = str(out.path)
        ctx.print_json({"new_key": new, "old_key": to_dict(done.old_key) if done.old_key else None})
        return EXIT_OK
    _record(
        [
            *_key_pairs(done.new_key, shown),
            ("replaces", ctx.args.key_id),
            ("old key valid until", old_until if done.old_key is not None else "unknown (could not read it back)"),
        ],
        ctx.out,
    )
    return EXIT_OK


def keys_expiring(ctx: Context) -> int:
    now = datetime.now(UTC)
    found = rotation.expiring_keys(ctx.client("any"), ctx.args.within, agent_id=ctx.args.agent, now=now)
    if ctx.json:
        ctx.print_json({"keys": [{"agent_id": item.agent_id, **to_dict(item.key)} for item in found]})
        return EXIT_OK
    rows = [
        (i.agent_id, i.key.key_id, i.key.label, i.key.expires_at, _expires_in(i.key.expires_at, now)) for i in found
    ]
    _table(("agent_id", "key_id", "label", "expires_at", "expires_in"), rows, ctx.out)
    return EXIT_OK


# ---------------------------------------------------------------- delegations


def delegations_grant(ctx: Context) -> int:
    scope = _scopes(ctx.args.scope)
    return ctx.show(ctx.client("agent").delegate(ctx.args.to_agent, scope, ctx.args.ttl))


def delegations_revoke(ctx: Context) -> int:
    return ctx.show(ctx.client("any").revoke_delegation(ctx.args.delegation_id))


def delegations_list(ctx: Context) -> int:
    answer = ctx.client("agent").list_delegations()

    def human() -> None:
        rows = [("granted", d) for d in answer.granted] + [("received", d) for d in answer.received]
        _table(
            ("direction", "delegation_id", "from_agent", "to_agent", "scope", "expires_at", "revoked_at"),
            [(way, d.delegation_id, d.from_agent, d.to_agent, d.scope, d.expires_at, d.revoked_at) for way, d in rows],
            ctx.out,
        )

    return ctx.show(answer, human)


# ---------------------------------------------------------------- secrets


def secrets_put(ctx: Context) -> int:
    client = ctx.client("agent", delegated=True)
    raw = _read_input(ctx.args.file, f"value of {ctx.args.name} (not echoed): ")
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError("the secret value must be UTF-8 text") from None
    return ctx.show(client.put_secret(ctx.args.name, value))


def secrets_get(ctx: Context) -> int:
    secret = ctx.client("agent", delegated=True).get_secret(ctx.args.name)
    if ctx.json:
        return ctx.show(secret)
    # The value exactly as stored, on standard output only; a newline only for a person at a terminal.
    ctx.out.write(secret.value + ("\n" if ctx.out.isatty() else ""))
    return EXIT_OK


def secrets_list(ctx: Context) -> int:
    answer = ctx.client("agent", delegated=True).list_secrets()
    rows = [(s.name, s.version, s.updated_at) for s in answer.secrets]
    return ctx.show(answer, lambda: _table(("name", "version", "updated_at"), rows, ctx.out))


def secrets_delete(ctx: Context) -> int:
    return ctx.show(ctx.client("agent", delegated=True).delete_secret(ctx.args.name))


# ---------------------------------------------------------------- settings, audit


def settings_list(ctx: Context) -> int:
    answer = ctx.client("any").list_settings()
    return ctx.show(answer, lambda: _table(("key", "value"), sorted(answer.settings.items()), ctx.out))


def settings_set(ctx: Context) -> int:
    return ctx.show(ctx.client("bridge").set_setting(ctx.args.key, ctx.args.value))


def _actor(event: AuditEvent) -> str:
    actor = event.actor
    if actor.get("kind") != "agent":
        return str(actor.get("kind", "-"))
    text = str(actor.get("agent_id", "agent"))
    return text + (f" for {actor['on_behalf_of']}" if actor.get("on_behalf_of") else "")


_TARGET_IDS = {
    "device_key": "key_id",
    "delegation": "delegation_id",
    "secret": "name",
    "setting": "key",
    "capability": "jti",
}


def _target(event: AuditEvent) -> str:
    """The kind and the ID of what the event acted on; ``--json`` shows every detail."""
    kind = str(event.target.get("kind", "-"))
    name = event.target.get(_TARGET_IDS.get(kind, "agent_id"))
    return f"{kind} {name}" if name else kind


def audit_list(ctx: Context) -> int:
    client = ctx.client("bridge")
    events, token = _paged(
        ctx,
        lambda size, token: client.list_audit(
            agent_id=ctx.args.agent, action=ctx.args.action, page_size=size, page_token=token
        ),
        "events",
    )
    if ctx.json:
        ctx.print_json({"events": [to_dict(event) for event in events], "next_page_token": token})
        return EXIT_OK
    rows = [(e.at, e.action, _actor(e), _target(e), e.target.get("agent_id"), e.request_id) for e in events]
    _table(("at", "action", "actor", "target", "target_agent", "request_id"), rows, ctx.out)
    return EXIT_OK


# ---------------------------------------------------------------- capability tokens


def capability_keygen(ctx: Context) -> int:
    _source_tree()
    from scripts import capability as capability_script  # its key file format and its safe write
    from shared import crypto, tokens

    kid = ctx.args.kid or f"cap-{datetime.now(UTC):%Y-%m-%d}"
    if tokens.KID.fullmatch(kid) is None:
        raise UsageError("--kid must match [A-Za-z0-9._-]{1,64}")
    seed, public = crypto.new_signing_key()
    try:
        capability_script.write_private_key(Path(ctx.args.out), seed)  # 0600, never overwrites, no symlink
    except FileExistsError:
        raise UsageError(f"{ctx.args.out} already exists; refusing to overwrite a key file") from None
    except OSError as error:
        raise UsageError(f"cannot create {ctx.args.out}: {error.strerror or error}") from None
    public_keys = {kid: tokens.b64encode(public)}
    if ctx.json:
        ctx.print_json({"kid": kid, "public_key": public_keys[kid], "private_key_file": ctx.args.out})
        return EXIT_OK
    _record(
        [
            ("kid", kid),
            ("public_key", public_keys[kid]),
            ("private_key", f"written to {ctx.args.out} (mode 0600); keep it offline"),
        ],
        ctx.out,
    )
    ctx.note(
        "Add the public key to the service's key set, beside any live one:\n"
        f"  AGENTPACK_CAPABILITY_PUBLIC_KEYS='{json.dumps(public_keys, separators=(',', ':'))}'"
    )
    return EXIT_OK


def capability_mint(ctx: Context) -> int:
    _source_tree()
    from scripts import capability as capability_script
    from shared import tokens

    key_file = Path(ctx.args.key)
    try:
        seed = capability_script.read_private_key(key_file)
        shared_with_others = key_file.stat().st_mode & 0o077
    except (OSError, ValueError, UnicodeDecodeError):
        raise UsageError(f"cannot read {ctx.args.key}: not a capability private key file (from keygen)") from None
    if shared_with_others:
        ctx.note(f"warning: {ctx.args.key} is readable by others; chmod 600 it")
    if not 1 <= ctx.args.ttl <= capability_script.MAX_TTL_SECONDS:
        raise UsageError(f"--ttl must be 1 to {capability_script.MAX_TTL_SECONDS} seconds (and at most the service's)")
    out = _PrivateFile(ctx.args.out, replace=True) if ctx.args.out else None
    try:
        claims = tokens.new_claims(
            ctx.args.agent, _scopes(ctx.args.scope), ctx.args.ttl, datetime.now(UTC), ctx.args.jti
        )
        token = tokens.sign(seed, ctx.args.kid, claims)
        recorded = None
        if ctx.args.record:
            # Recorded before it is shown: a token that could not be put on record is never handed out.
            recorded = ctx.client("bridge").record_capability(
                jti=claims["jti"],
                sub=claims["sub"],
                scope=claims["scope"],
                iat=claims["iat"],
                exp=claims["exp"],
                kid=ctx.args.kid,
            )
    except BaseException as problem:
        if out is not None:
            out.discard()
        if isinstance(problem, ValueError):
            raise UsageError(str(problem)) from None
        raise
    if out is not None:
        out.write(token + "\n")
    expires = format_time(datetime.fromtimestamp(claims["exp"], UTC))
    if ctx.json:
        data: dict[str, Any] = {"kid": ctx.args.kid, "claims": claims}
        data.update({"token_file": ctx.args.out} if ctx.args.out else {"token": token})
        data["recorded_at"] = format_time(recorded.recorded_at) if recorded else None
        ctx.print_json(data)
        return EXIT_OK
    if not ctx.args.out:
        print(token, file=ctx.out)
    where = f" (written to {ctx.args.out})" if ctx.args.out else ""
    ctx.note(f"token{where} for {claims['sub']}, scope '{claims['scope']}', until {expires}, jti {claims['jti']}")
    if recorded is not None:
        ctx.note(f"recorded at {format_time(recorded.recorded_at)}")
    return EXIT_OK


def _token_claims(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    parts = token.split(".")
    try:
        if len(parts) != 3:
            raise ValueError
        header, claims = (json.loads(_b64decode(part)) for part in parts[:2])
    except ValueError:  # binascii.Error and JSONDecodeError are ValueErrors
        raise UsageError("that is not a capability token (a compact JWS: three base64url parts)") from None
    if not isinstance(header, dict) or not isinstance(claims, dict) or not isinstance(header.get("kid"), str):
        raise UsageError("that is not a capability token (no kid in its header, or claims not an object)")
    return header, claims


def capability_record(ctx: Context) -> int:
    client = ctx.client("bridge")
    raw = _read_input(ctx.args.token_file, "capability token (not echoed): ")
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise UsageError("that is not a capability token (not ASCII)") from None
    header, claims = _token_claims(token)
    try:
        recorded = client.record_capability(
            jti=claims["jti"],
            sub=claims["sub"],
            scope=claims["scope"],
            iat=claims["iat"],
            exp=claims["exp"],
            kid=header["kid"],
        )
    except KeyError as missing:
        raise UsageError(f"the token has no {missing} claim") from None
    return ctx.show(recorded)


# ---------------------------------------------------------------- bridge keys, re-sealing


def bridge_key_new(ctx: Context) -> int:
    _source_tree()
    from shared import keys

    out = _PrivateFile(ctx.args.out, replace=False) if ctx.args.out else None
    key = keys.new_bridge_key()
    digest = keys.hash_key(key)
    if out is not None:
        out.write(key + "\n")
    if ctx.json:
        ctx.print_json(({"bridge_key_file": str(out.path)} if out else {"bridge_key": key}) | {"hash": digest})
        return EXIT_OK
    if out is None:
        ctx.note("New bridge key. It is shown only this once: store it in your secret store now.")
    _record([("bridge key", f"written to {out.path} (mode 0600)" if out else key), ("hash", digest)], ctx.out)
    ctx.note(
        "Configure the hash, never the key: the Secret Manager secret agentpack-bridge-key-hashes\n"
        "(comma-separate 'OLDHASH,NEWHASH' while rotating). Locally: AGENTPACK_BRIDGE_KEY=<key> scripts/serve."
    )
    return EXIT_OK


def bridge_key_hash(ctx: Context) -> int:
    _source_tree()
    from shared import keys

    raw = _read_input(ctx.args.file, "bridge key (not echoed): ")
    key = raw.decode("ascii", errors="replace").strip()
    if not keys.is_bridge_key(key):
        raise UsageError("that is not a bridge key (wrong format or checksum)")
    digest = keys.hash_key(key)
    if ctx.json:
        ctx.print_json({"hash": digest})
    else:
        print(digest, file=ctx.out)
    return EXIT_OK


def reseal(ctx: Context) -> int:
    _source_tree()
    if not os.environ.get("AGENTPACK_SECRETS_KEYS") and os.environ.get("AGENTPACK_SECRET_SOURCE") != "secret-manager":
        raise UsageError(
            "set AGENTPACK_SECRETS_KEYS to every key version still in use, the new one included "
            "(or AGENTPACK_SECRET_SOURCE=secret-manager)"
        )
    from scripts import reseal as resealing
    from shared import errors as service_errors

    try:
        code = resealing.main(["--after", ctx.args.after] if ctx.args.after else [])
    except service_errors.ApiError as error:
        print(f"error: {error.code}: {error.description}", file=ctx.err)
        return EXIT_UNAVAILABLE if error.status == 503 else EXIT_INTERNAL
    return EXIT_OK if code == 0 else EXIT_FAILED


# ---------------------------------------------------------------- the parser


def _common() -> argparse.ArgumentParser:
    """Options every command takes, before or after its name (SUPPRESS keeps the top-level value)."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("global options")
    group.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON for scripts")
    group.add_argument(
        "--url", default=argparse.SUPPRESS, help=f"the service (default: $AGENTPACK_URL or {config.DEFAULT_URL})"
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=argparse.SUPPRESS,
        metavar="SECONDS",
        help=f"per attempt (default: $AGENTPACK_TIMEOUT or {DEFAULT_TIMEOUT:g})",
    )
    side = group.add_mutually_exclusive_group()
    side.add_argument(
        "--as-bridge",
        dest="role",
        action="store_const",
        const="bridge",
        default=argparse.SUPPRESS,
        help="use the bridge key even if an agent credential is set",
    )
    side.add_argument(
        "--as-agent",
        dest="role",
        action="store_const",
        const="agent",
        default=argparse.SUPPRESS,
        help="use the device key (else the token) even if the bridge key is set",
    )
    return common


class _Builder:
    def __init__(self) -> None:
        self.common = _common()

    def group(self, parent: Any, name: str, help: str, description: str, examples: Sequence[str]) -> Any:
        parser = parent.add_parser(
            name,
            help=help,
            description=description,
            epilog=_examples(examples),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        return parser.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")

    def command(
        self, parent: Any, name: str, handler: Handler, help: str, description: str, examples: Sequence[str]
    ) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = parent.add_parser(
            name,
            help=help,
            description=description,
            epilog=_examples(examples),
            parents=[self.common],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.set_defaults(handler=handler)
        return parser


def _examples(lines: Sequence[str]) -> str:
    return ("examples:\n" if len(lines) > 1 else "example:\n") + "\n".join(f"  {line}" for line in lines)


def _paging(parser: argparse.ArgumentParser, default_limit: int) -> None:
    parser.add_argument("--limit", type=int, default=default_limit, help=f"at most this many (default {default_limit})")
    parser.add_argument("--all", action="store_true", help="every page")
    parser.add_argument("--page-token", help="start at this page (from an earlier listing)")


def _delegation_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--delegation",
        metavar="DELEGATION_ID",
        default=argparse.SUPPRESS,
        help="act for the grantor through this delegation (default: $AGENTPACK_DELEGATION)",
    )


def build_parser() -> argparse.ArgumentParser:
    b = _Builder()
    parser = argparse.ArgumentParser(
        prog="agentpack",
        description=__doc__,
        epilog=_examples(
            [
                "export AGENTPACK_BRIDGE_KEY_FILE=~/.agentpack/bridge.key",
                "agentpack agents create build-bot",
                "agentpack --json agents list",
            ]
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common()],  # its own copy: set_defaults below must not reach the commands
    )
    parser.set_defaults(json=False, url=None, timeout=None, role=None)
    parser.add_argument("--version", action="version", version=f"agentpack {__version__}")
    top = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # agents
    g = b.group(
        top,
        "agents",
        "create, read, list, rename, disable and enable agents",
        "Agents (the bridge key; an agent may read itself with 'agents get').",
        ["agentpack agents create build-bot --tenant acme", "agentpack agents list --tenant acme"],
    )
    c = b.command(
        g,
        "create",
        agents_create,
        "create an agent (bridge key)",
        "Create an agent and print it.",
        ["agentpack agents create build-bot --tenant acme"],
    )
    c.add_argument("display_name", help="1 to 128 characters")
    c.add_argument("--tenant", help="its tenant (default: default)")
    c = b.command(
        g,
        "get",
        agents_get,
        "show one agent",
        "Show an agent: any agent with the bridge key, or the calling agent itself.",
        ["agentpack agents get agt_...", "AGENTPACK_DEVICE_KEY_FILE=dev.key agentpack agents get"],
    )
    c.add_argument("agent_id", nargs="?", help="required with the bridge key; an agent shows itself")
    c = b.command(
        g,
        "list",
        agents_list,
        "list agents (bridge key)",
        "List agents in ID order.",
        ["agentpack agents list --tenant acme --all"],
    )
    c.add_argument("--tenant", help="only this tenant's agents")
    _paging(c, 50)
    c = b.command(
        g,
        "update",
        agents_update,
        "rename an agent (bridge key)",
        "Change an agent's display name.",
        ["agentpack agents update agt_... --name deploy-bot"],
    )
    c.add_argument("agent_id")
    c.add_argument("--name", required=True, help="the new display name")
    for name, handler, what in (("disable", agents_disable, "Suspend"), ("enable", agents_enable, "Restore")):
        c = b.command(
            g,
            name,
            handler,
            f"{name} an agent (bridge key)",
            f"{what} every credential and delegation of an agent, from the very next request"
            + (" (revoked or expired ones stay so)." if name == "enable" else "."),
            [f"agentpack agents {name} agt_..."],
        )
        c.add_argument("agent_id")

    # device keys
    g = b.group(
        top,
        "keys",
        "issue, revoke, list and rotate device keys; find keys about to expire",
        "Device keys: the bridge key for any agent (--agent), an agent for its own keys.",
        [
            "agentpack keys issue --agent agt_... --label laptop --ttl 30d --out laptop.key",
            "agentpack keys expiring --within 7d",
        ],
    )
    c = b.command(
        g,
        "issue",
        keys_issue,
        "issue a device key (printed once)",
        "Issue a device key. The key is printed (or written with --out) this once and never again.",
        ["agentpack keys issue --agent agt_... --label laptop --ttl 30d --out laptop.key"],
    )
    c.add_argument("--agent", help="the agent (required with the bridge key)")
    c.add_argument("--label", help="1 to 64 characters, e.g. the install's host name")
    c.add_argument("--ttl", type=duration, help="lifetime, e.g. 86400, 12h or 30d (default: no expiry)")
    c.add_argument("--out", metavar="FILE", help="write the key to this new file (mode 0600) instead of printing it")
    c = b.command(
        g,
        "revoke",
        keys_revoke,
        "revoke a device key",
        "Revoke a device key: the very next request with it is refused.",
        ["agentpack keys revoke dk_..."],
    )
    c.add_argument("key_id")
    c = b.command(
        g,
        "list",
        keys_list,
        "list an agent's device keys (never the keys)",
        "List an agent's device keys, oldest first, with their status.",
        ["agentpack keys list --agent agt_..."],
    )
    c.add_argument("--agent", help="the agent (required with the bridge key)")
    c = b.command(
        g,
        "rotate",
        keys_rotate,
        "replace a key; the old one works on for the grace window",
        "Issue a new key replacing KEY_ID and print it once. The old key keeps working for the\n"
        "rotation_grace_seconds setting, so installs can switch; the new key keeps the old one's\n"
        "label and lifetime unless --label or --ttl say otherwise.",
        [
            "agentpack keys rotate dk_... --agent agt_...",
            "AGENTPACK_DEVICE_KEY_FILE=dev.key agentpack keys rotate dk_... --out dev.key",
        ],
    )
    c.add_argument("key_id")
    c.add_argument("--agent", help="the agent (required with the bridge key)")
    c.add_argument("--label", help="the new key's label (default: the old key's)")
    c.add_argument("--ttl", type=duration, help="the new key's lifetime (default: the old key's)")
    c.add_argument(
        "--out", metavar="FILE", help="write the new key to FILE (mode 0600, replacing it) instead of printing it"
    )
    c = b.command(
        g,
        "expiring",
        keys_expiring,
        "list live keys that expire soon",
        "List live keys whose expiry falls within --within from now, soonest first: every agent's\n"
        "with the bridge key (or one --agent), an agent's own otherwise.",
        ["agentpack keys expiring --within 7d", "agentpack --json keys expiring --within 3600"],
    )
    c.add_argument("--within", type=duration, default=7 * 86400, help="e.g. 3600, 12h, 7d (default 7d)")
    c.add_argument("--agent", help="only this agent's keys")

    # delegations
    g = b.group(
        top,
        "delegations",
        "grant, revoke and list delegations between agents",
        "Delegations: an agent lets another agent of its tenant call some secrets routes for it.",
        ["agentpack delegations grant agt_B... --scope secrets/get --ttl 1h"],
    )
    c = b.command(
        g,
        "grant",
        delegations_grant,
        "let another agent act for this one (agent credential)",
        "Let TO_AGENT call the --scope routes for the calling agent, for --ttl. Delegable routes: "
        + ", ".join(DELEGABLE_ROUTES)
        + ".",
        ["agentpack delegations grant agt_B... --scope secrets/get --scope secrets/list --ttl 1h"],
    )
    c.add_argument("to_agent")
    c.add_argument("--scope", action="append", required=True, help="a route; repeat, or separate with commas")
    c.add_argument("--ttl", type=duration, required=True, help="e.g. 3600 or 1h (at most delegation_max_ttl_seconds)")
    c = b.command(
        g,
        "revoke",
        delegations_revoke,
        "end a delegation (grantor, grantee or bridge key)",
        "End a delegation at once.",
        ["agentpack delegations revoke dlg_..."],
    )
    c.add_argument("delegation_id")
    b.command(
        g,
        "list",
        delegations_list,
        "list the delegations this agent granted and received",
        "List the calling agent's delegations, granted and received.",
        ["agentpack delegations list"],
    )

    # secrets
    g = b.group(
        top,
        "secrets",
        "put, get, list and delete an agent's secrets",
        "An agent's secrets (device key or token; --delegation to act for a grantor). Never the bridge key.",
        [
            'printf %s "$DB_PASSWORD" | agentpack secrets put db-password',
            "agentpack secrets get db-password > db-password.txt",
        ],
    )
    c = b.command(
        g,
        "put",
        secrets_put,
        "store a secret read from stdin or --file",
        "Store a new version of a secret. The value is read from standard input (a terminal is\n"
        "asked without echo) or from --file, exactly as given: use printf %s, not echo, to add no newline.",
        [
            'printf %s "$DB_PASSWORD" | agentpack secrets put db-password',
            "agentpack secrets put tls-key --file server.key",
        ],
    )
    c.add_argument("name", help="[A-Za-z0-9._-]{1,128}")
    c.add_argument("--file", help="read the value from this file ('-' for standard input)")
    _delegation_option(c)
    c = b.command(
        g,
        "get",
        secrets_get,
        "print a secret's value to stdout",
        "Print a secret's value, exactly as stored, to standard output (nothing else goes there).",
        [
            "agentpack secrets get db-password > db-password.txt",
            "AGENTPACK_DELEGATION=dlg_... agentpack secrets get db-password",
        ],
    )
    c.add_argument("name")
    _delegation_option(c)
    c = b.command(
        g,
        "list",
        secrets_list,
        "list secret names and versions (never values)",
        "List the names and versions of the secrets; values are never listed.",
        ["agentpack secrets list"],
    )
    _delegation_option(c)
    c = b.command(
        g,
        "delete",
        secrets_delete,
        "delete a secret",
        "Delete a secret and all its versions.",
        ["agentpack secrets delete db-password"],
    )
    c.add_argument("name")
    _delegation_option(c)

    # settings
    g = b.group(
        top,
        "settings",
        "read and change the allow-listed settings",
        "Operator settings: any credential reads them, the bridge key changes them.",
        ["agentpack settings set rotation_grace_seconds 7200"],
    )
    b.command(
        g,
        "list",
        settings_list,
        "show every setting",
        "Show every allow-listed setting and its value.",
        ["agentpack settings list"],
    )
    c = b.command(
        g,
        "set",
        settings_set,
        "change a setting (bridge key)",
        "Change one allow-listed setting.",
        ["agentpack settings set rotation_grace_seconds 7200"],
    )
    c.add_argument(
        "key",
        help="delegation_max_ttl_seconds, device_key_max_active, rotation_grace_seconds, "
        "secret_max_bytes or audit_retention_days",
    )
    c.add_argument("value", type=int)

    # audit
    g = b.group(
        top,
        "audit",
        "read the audit trail",
        "The audit trail, newest first (bridge key).",
        ["agentpack audit list --agent agt_... --action device.rotate"],
    )
    c = b.command(
        g,
        "list",
        audit_list,
        "list audit events, newest first",
        "List audit events, newest first; --agent keeps those that name the agent.",
        ["agentpack audit list --agent agt_... --limit 20", "agentpack --json audit list --all"],
    )
    c.add_argument("--agent", help="events naming this agent (actor, acted for, or target)")
    c.add_argument("--action", help="e.g. device.issue, secret.put, delegation.grant")
    _paging(c, 50)

    # capability tokens
    g = b.group(
        top,
        "capability",
        "make signing keys, mint and record capability tokens",
        "Capability tokens: Ed25519-signed, minted offline from a private key file.",
        [
            "agentpack capability keygen --kid cap-2026-11 --out cap-2026-11.key",
            "agentpack capability mint --key cap-2026-11.key --kid cap-2026-11 --agent agt_... "
            "--scope secrets/get --record > token.txt",
        ],
    )
    c = b.command(
        g,
        "keygen",
        capability_keygen,
        "make a signing key pair (offline)",
        "Make an Ed25519 signing key. The private key goes to --out (mode 0600, never printed);\n"
        "the public key is printed, to add to AGENTPACK_CAPABILITY_PUBLIC_KEYS.",
        ["agentpack capability keygen --kid cap-2026-11 --out ~/.agentpack/cap-2026-11.key"],
    )
    c.add_argument("--out", required=True, metavar="FILE", help="a new file for the private key")
    c.add_argument("--kid", help="the key's ID (default: cap-<today>)")
    c = b.command(
        g,
        "mint",
        capability_mint,
        "mint a token (offline; --record puts its claims on record)",
        "Mint a capability token for --agent and --scope and print it. With --record, its claims\n"
        "(never the token) are recorded first with the bridge key.",
        [
            "agentpack capability mint --key cap.key --kid cap-2026-11 --agent agt_... "
            "--scope secrets/get --ttl 300 --record > token.txt"
        ],
    )
    c.add_argument("--key", required=True, metavar="FILE", help="the private key file (from keygen)")
    c.add_argument("--kid", required=True, help="the key's ID, as configured in the service")
    c.add_argument("--agent", required=True, help="the agent the token speaks for (sub)")
    c.add_argument("--scope", action="append", required=True, help="a route; repeat, or separate with spaces or commas")
    c.add_argument("--ttl", type=duration, default=300, help="lifetime (default 300 s, the service's usual maximum)")
    c.add_argument("--jti", help="the token's ID (default: random)")
    c.add_argument("--record", action="store_true", help="record the claims with the bridge key before printing")
    c.add_argument("--out", metavar="FILE", help="write the token to FILE (mode 0600) instead of printing it")
    c = b.command(
        g,
        "record",
        capability_record,
        "record a minted token's claims (bridge key)",
        "Record the claims of a token read from standard input or --token-file (the token itself\nis never sent).",
        ["agentpack capability record < token.txt"],
    )
    c.add_argument("--token-file", metavar="FILE", help="read the token from FILE instead of standard input")

    # bridge key
    g = b.group(
        top,
        "bridge-key",
        "make a bridge key, or hash one (offline)",
        "The project bridge key: the deployment holds only its hash.",
        ["agentpack bridge-key new --out ~/.agentpack/bridge.key"],
    )
    c = b.command(
        g,
        "new",
        bridge_key_new,
        "make a bridge key and print its hash",
        "Make a bridge key; print it once (or write it to --out) with the hash to configure.",
        ["agentpack bridge-key new --out ~/.agentpack/bridge.key"],
    )
    c.add_argument("--out", metavar="FILE", help="write the key to this new file (mode 0600) instead of printing it")
    c = b.command(
        g,
        "hash",
        bridge_key_hash,
        "print the hash of a bridge key read from stdin",
        "Print the SHA-256 hash of a bridge key read from standard input or --file.",
        ["agentpack bridge-key hash < ~/.agentpack/bridge.key"],
    )
    c.add_argument("--file", help="read the key from this file")

    # reseal
    c = b.command(
        top,
        "reseal",
        reseal,
        "re-seal every stored secret under the newest key (offline, datastore)",
        "Re-seal every stored secret under the newest secrets key version, straight in the datastore\n"
        "(FIRESTORE_EMULATOR_HOST, or Google credentials). Resumable with --after; safe to run twice.\n"
        "Exit 1 if some records could not be re-sealed (they are listed).",
        ['AGENTPACK_SECRETS_KEYS=\'{"1": "...", "2": "..."}\' agentpack reseal'],
    )
    c.add_argument("--after", metavar="PATH", help="resume after this record (printed by an earlier run)")
    return parser


# ---------------------------------------------------------------- main


def _hint(ctx: Context, error: errors.ApiError) -> str | None:
    credential = ctx.credential
    sent = f"the {credential.name} from {credential.source}" if credential else "the credential"
    if isinstance(error, errors.TimedOut):
        return f"no answer from {error.url} in time; is the service up? (--timeout or AGENTPACK_TIMEOUT to wait longer)"
    if isinstance(error, errors.ConnectionFailed):
        return f"is the service running at {error.url}? (set AGENTPACK_URL or --url)"
    if isinstance(error, errors.UnexpectedResponse):
        return "check AGENTPACK_URL: it should be the agentpack identity service"
    if isinstance(error, errors.Unauthenticated):
        return f"{sent} was refused: mistyped, unknown, expired or revoked, or its agent is disabled"
    if isinstance(error, errors.Forbidden):
        if ctx.needs == "bridge" and credential is not None and credential.kind != "bridge_key":
            return f"an operator command: it needs the bridge key (AGENTPACK_BRIDGE_KEY_FILE), not {sent}"
        if ctx.needs == "agent" and credential is not None and credential.kind == "bridge_key":
            return f"an agent command: it needs a device key or a token, not {sent}"
        through = f" through delegation {ctx.delegation}" if ctx.delegation else ""
        return f"sent with {sent}{through}"
    return None


def _fail(ctx: Context, message: str) -> int:
    print(f"agentpack: error: {message}", file=ctx.err)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ctx = Context(args)
    try:
        return int(args.handler(ctx))
    except (UsageError, ConfigurationError) as problem:
        return _fail(ctx, str(problem))
    except errors.ApiError as error:
        print(f"error: {error.code}: {error.description} (request {error.request_id})", file=ctx.err)
        hint = _hint(ctx, error)
        if hint:
            print(f"hint: {hint}", file=ctx.err)
        return exit_code(error)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (| head): stop quietly, and keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
