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
reseal left records behind, a deploy step failed or its tools are missing), or
'authz check' answered denied; 2 usage (bad arguments, no credential);
3 refused by the service (a 4xx answer); 4 unavailable (503, cannot connect, no
answer in time, or no agentpack service at that URL); 5 the service failed (500).
Errors go to standard error as error: <code>: <description> (request <id>).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from agentpack import config
from agentpack.cli import (
    agents,
    audit,
    authz,
    bridge_key,
    capability,
    delegations,
    deploy,
    grants,
    keys,
    login,
    reseal,
    secrets,
    settings,
    tokens,
    users,
)
from agentpack.cli.context import DELEGABLE_ROUTES, Handler, duration, positive_int
from agentpack.client import DEFAULT_TIMEOUT, __version__


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
    parser.add_argument(
        "--limit", type=positive_int, default=default_limit, help=f"at most this many (default {default_limit})"
    )
    parser.add_argument("--all", action="store_true", help="every page")
    parser.add_argument("--page-token", help="start at this page (from an earlier listing)")


def _delegation_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--delegation",
        metavar="DELEGATION_ID",
        default=argparse.SUPPRESS,
        help="act for the grantor through this delegation (default: $AGENTPACK_DELEGATION)",
    )


def _staging_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", metavar="DIR", help="where to build (default: build/ of the checkout, else ./build)")
    parser.add_argument(
        "--capability-public-keys",
        metavar="JSON",
        help='{"kid": "base64url public key", ...} to embed as capability_keys.json (checked; never the dev key)',
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
        agents.agents_create,
        "create an agent (bridge key)",
        "Create an agent and print it.",
        ["agentpack agents create build-bot --tenant acme"],
    )
    c.add_argument("display_name", help="1 to 128 characters")
    c.add_argument("--tenant", help="its tenant (default: default)")
    c.add_argument(
        "--scope", action="append", help="an OAuth scope its tokens may carry; repeat, or separate with commas"
    )
    c = b.command(
        g,
        "get",
        agents.agents_get,
        "show one agent",
        "Show an agent: any agent with the bridge key, or the calling agent itself.",
        ["agentpack agents get agt_...", "AGENTPACK_DEVICE_KEY_FILE=dev.key agentpack agents get"],
    )
    c.add_argument("agent_id", nargs="?", help="required with the bridge key; an agent shows itself")
    c = b.command(
        g,
        "list",
        agents.agents_list,
        "list agents (bridge key)",
        "List agents in ID order.",
        ["agentpack agents list --tenant acme --all"],
    )
    c.add_argument("--tenant", help="only this tenant's agents")
    _paging(c, 50)
    c = b.command(
        g,
        "update",
        agents.agents_update,
        "rename an agent, or set its OAuth scopes (bridge key)",
        "Change an agent's display name, or replace its OAuth scopes (the most its access tokens may carry).",
        ["agentpack agents update agt_... --name deploy-bot", "agentpack agents update agt_... --scope read:reports"],
    )
    c.add_argument("agent_id")
    c.add_argument("--name", help="the new display name")
    c.add_argument(
        "--scope", action="append", help="replace its OAuth scopes with these; repeat, or separate with commas"
    )
    c.add_argument("--no-scopes", action="store_true", help="take every OAuth scope away")
    for name, handler, what in (
        ("disable", agents.agents_disable, "Suspend"),
        ("enable", agents.agents_enable, "Restore"),
    ):
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
        "issue, revoke, list and rotate device keys; find keys about to expire; report leaked keys",
        "Device keys: the bridge key for any agent (--agent), an agent for its own keys.",
        [
            "agentpack keys issue --agent agt_... --label laptop --ttl 30d --out laptop.key",
            "agentpack keys expiring --within 7d",
        ],
    )
    c = b.command(
        g,
        "issue",
        keys.keys_issue,
        "issue a device key (printed once)",
        "Issue a device key. The key is printed (or written with --out) this once and never again.",
        ["agentpack keys issue --agent agt_... --label laptop --ttl 30d --out laptop.key"],
    )
    c.add_argument("--agent", help="the agent (required with the bridge key)")
    c.add_argument("--label", help="1 to 64 characters, e.g. the install's host name")
    c.add_argument("--ttl", type=duration, help="lifetime, e.g. 86400, 12h or 30d (default: no expiry)")
    c.add_argument("--out", metavar="FILE", help="write the key to this new file (mode 0600) instead of printing it")
    c.add_argument("--scope", action="append", help="narrow the key to these of the agent's scopes; repeat or commas")
    c.add_argument(
        "--public-key",
        metavar="FILE",
        help="register this Ed25519 public key (from 'keys keypair') for private_key_jwt instead of making a key",
    )
    c = b.command(
        g,
        "keypair",
        keys.keys_keypair,
        "make an Ed25519 key pair for private_key_jwt (offline)",
        "Write a new private key to --out (mode 0600) and its public key to --out.pub; register the\n"
        "public one with 'keys issue --public-key', then get tokens with 'token get --key-pair'.",
        ["agentpack keys keypair --out agent.key && agentpack keys issue --agent agt_... --public-key agent.key.pub"],
    )
    c.add_argument("--out", required=True, metavar="FILE", help="a new file for the private key")
    c = b.command(
        g,
        "revoke",
        keys.keys_revoke,
        "revoke a device key",
        "Revoke a device key: the very next request with it is refused.",
        ["agentpack keys revoke dk_..."],
    )
    c.add_argument("key_id")
    c = b.command(
        g,
        "list",
        keys.keys_list,
        "list an agent's device keys (never the keys)",
        "List an agent's device keys, oldest first, with their status.",
        ["agentpack keys list --agent agt_..."],
    )
    c.add_argument("--agent", help="the agent (required with the bridge key)")
    c = b.command(
        g,
        "rotate",
        keys.keys_rotate,
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
        keys.keys_expiring,
        "list live keys that expire soon",
        "List live keys whose expiry falls within --within from now, soonest first: every agent's\n"
        "with the bridge key (or one --agent), an agent's own otherwise.",
        ["agentpack keys expiring --within 7d", "agentpack --json keys expiring --within 3600"],
    )
    c.add_argument("--within", type=duration, default=7 * 86400, help="e.g. 3600, 12h, 7d (default 7d)")
    c.add_argument("--agent", help="only this agent's keys")
    c = b.command(
        g,
        "report-leak",
        keys.keys_report_leak,
        "report leaked keys so they are revoked (no credential needed)",
        "Report keys found where they should not be: every live device key and refresh token among\n"
        "them is revoked at once, a live bridge key is reported. Keys are found in the arguments, in\n"
        "--file, or on standard input (any text: only whole keys with their check digits are sent).\n"
        "Needs no credential; the answer does not say which keys were real.",
        [
            "agentpack keys report-leak apkd_...",
            "agentpack keys report-leak --file leaked.log",
            "git show HEAD | agentpack keys report-leak",
        ],
    )
    c.add_argument("keys", nargs="*", metavar="KEY", help="a leaked key (or text holding keys)")
    c.add_argument("--file", metavar="FILE", help="read the keys from this file ('-': standard input)")

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
        delegations.delegations_grant,
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
        delegations.delegations_revoke,
        "end a delegation (grantor, grantee or bridge key)",
        "End a delegation at once.",
        ["agentpack delegations revoke dlg_..."],
    )
    c.add_argument("delegation_id")
    b.command(
        g,
        "list",
        delegations.delegations_list,
        "list the delegations this agent granted and received",
        "List the calling agent's delegations, granted and received.",
        ["agentpack delegations list"],
    )

    # users
    g = b.group(
        top,
        "users",
        "register, read, list, rename, disable and enable users (people)",
        "Users: people who sign in with Firebase Authentication, registered here by the bridge key.",
        ["agentpack users create firebase-uid-123 --name Ada --tenant acme", "agentpack users list --tenant acme"],
    )
    c = b.command(
        g,
        "create",
        users.users_create,
        "register a Firebase account as a user (bridge key)",
        "Register the Firebase account FIREBASE_UID as a user and print it (the same account twice: refused).",
        ["agentpack users create firebase-uid-123 --name Ada --tenant acme"],
    )
    c.add_argument("firebase_uid", help="the account's Firebase UID")
    c.add_argument("--tenant", help="its tenant (default: default)")
    c.add_argument("--name", help="its display name")
    c = b.command(
        g,
        "get",
        users.users_get,
        "show one user (bridge key)",
        "Show a user.",
        ["agentpack users get usr_..."],
    )
    c.add_argument("user_id", nargs="?", help="required with the bridge key")
    c = b.command(
        g,
        "list",
        users.users_list,
        "list users (bridge key)",
        "List users.",
        ["agentpack users list --tenant acme --all"],
    )
    c.add_argument("--tenant", help="only this tenant's users")
    _paging(c, 50)
    c = b.command(
        g,
        "update",
        users.users_update,
        "rename, disable or enable a user (bridge key)",
        "Change a user's display name, or disable it (at once: its tokens, grants and checks) or enable it.",
        ["agentpack users update usr_... --name 'Ada L.'", "agentpack users update usr_... --disable"],
    )
    c.add_argument("user_id")
    c.add_argument("--name", help="the new display name")
    able = c.add_mutually_exclusive_group()
    able.add_argument("--disable", dest="disabled", action="store_const", const=True, help="disable the user")
    able.add_argument("--enable", dest="disabled", action="store_const", const=False, help="enable the user")

    # a user's grants to agents
    g = b.group(
        top,
        "grants",
        "grant, revoke and list a user's grants to agents",
        "Grants: a user makes an agent its delegate_of for some actions (read, write, delete, share), so\n"
        "checks with --on-behalf-of the user may allow the agent what the user may do.",
        ["agentpack grants create agt_... --user usr_... --action read --ttl 1h"],
    )
    c = b.command(
        g,
        "create",
        grants.grants_create,
        "let an agent act for a user (bridge key with --user)",
        "Make AGENT_ID the user's delegate_of for --action, for --ttl (default and most: the\n"
        "user_delegation_max_ttl_seconds setting). One grant per user and agent: granting again replaces it.",
        ["agentpack grants create agt_... --user usr_... --action read,write --ttl 12h"],
    )
    c.add_argument("agent_id")
    c.add_argument("--user", help="the user who grants (required with the bridge key)")
    c.add_argument(
        "--action", action="append", required=True, help="read, write, delete or share; repeat, or separate with commas"
    )
    c.add_argument("--ttl", type=duration, help="e.g. 3600, 12h or 7d")
    c = b.command(
        g,
        "revoke",
        grants.grants_revoke,
        "end a grant (bridge key, the user, or the agent's device key)",
        "End a user's grant at once.",
        ["agentpack grants revoke ugr_..."],
    )
    c.add_argument("grant_id")
    b.command(
        g,
        "list",
        grants.grants_list,
        "list the grants this agent holds (agent credential)",
        "List the user grants the calling agent holds, revoked and expired ones included.",
        ["AGENTPACK_DEVICE_KEY_FILE=dev.key agentpack grants list"],
    )

    # relations
    g = b.group(
        top,
        "authz",
        "write, read and check relationship tuples (who may do what to which resource)",
        "Relationship tuples: RESOURCE (<type>:<id>) has SUBJECT (user:usr_... or agent:agt_...) as its\n"
        "owner (read write delete share), editor (read write) or viewer (read). The bridge key names the\n"
        "tenant (--tenant); an agent whose scopes hold authz:write, authz:read or authz:check works in its own.",
        [
            "agentpack authz write --tenant default --owner doc:42 user:usr_...",
            "agentpack authz check --tenant default --subject agent:agt_... --on-behalf-of user:usr_... "
            "--action read --resource doc:42",
        ],
    )
    c = b.command(
        g,
        "write",
        authz.authz_write,
        "write and delete tuples, all or nothing",
        "Write (--owner, --editor, --viewer) and delete (--delete) tuples in one all-or-nothing change,\n"
        "at most 100 in all. --file reads JSON (a file, or - for standard input): a list of\n"
        '{"resource", "relation", "subject"} objects to write, or {"writes": [...], "deletes": [...]}.',
        [
            "agentpack authz write --tenant default --owner doc:42 user:usr_...",
            "agentpack authz write --tenant default --viewer doc:42 agent:agt_... --delete doc:42 editor user:usr_...",
            "agentpack authz write --tenant default --file - < tuples.json",
        ],
    )
    for relation in authz.RELATIONS:
        c.add_argument(
            f"--{relation}",
            nargs=2,
            action="append",
            metavar=("RESOURCE", "SUBJECT"),
            help=f"write: SUBJECT is RESOURCE's {relation}; repeat",
        )
    c.add_argument(
        "--delete", nargs=3, action="append", metavar=("RESOURCE", "RELATION", "SUBJECT"), help="delete a tuple; repeat"
    )
    c.add_argument("--file", metavar="FILE", help="tuples as JSON from FILE (- for standard input)")
    c.add_argument("--tenant", help="the tenant (required with the bridge key)")
    c = b.command(
        g,
        "read",
        authz.authz_read,
        "list a resource's tuples",
        "List the tuples of RESOURCE.",
        ["agentpack authz read doc:42 --tenant default"],
    )
    c.add_argument("resource", help="<type>:<id>, e.g. doc:42")
    c.add_argument("--tenant", help="the tenant (required with the bridge key)")
    c = b.command(
        g,
        "check",
        authz.authz_check,
        "may a subject do an action on a resource? (exit 0 allowed, 1 denied)",
        "Ask whether --subject (or the holder of an access token, --token) may do --action on --resource;\n"
        "with --on-behalf-of, an agent acting for that user (it must be the user's delegate_of for the\n"
        "action, and the user must be allowed). Prints allowed or denied.\n"
        "Exit codes: 0 allowed, 1 denied, 2 usage, 3 refused (e.g. no authz:check scope), 4 unavailable.",
        [
            "agentpack authz check --tenant default --subject agent:agt_... --on-behalf-of user:usr_... "
            "--action read --resource doc:42",
            "agentpack authz check --subject user:usr_... --action write --resource doc:42 && echo may write",
            "agentpack token get | agentpack authz check --token - --action read --resource doc:42",
        ],
    )
    c.add_argument("--subject", help="user:usr_... or agent:agt_...")
    c.add_argument("--on-behalf-of", metavar="USER", help="user:usr_...: the agent acts for this user")
    c.add_argument("--action", required=True, help="read, write, delete or share")
    c.add_argument("--resource", required=True, help="<type>:<id>")
    c.add_argument("--token", metavar="FILE", help="check an access token's holder instead; read from FILE (- stdin)")
    c.add_argument("--tenant", help="the tenant (required with the bridge key)")

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
        secrets.secrets_put,
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
        secrets.secrets_get,
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
        secrets.secrets_list,
        "list secret names and versions (never values)",
        "List the names and versions of the secrets; values are never listed.",
        ["agentpack secrets list"],
    )
    _delegation_option(c)
    c = b.command(
        g,
        "delete",
        secrets.secrets_delete,
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
        settings.settings_list,
        "show every setting",
        "Show every allow-listed setting and its value.",
        ["agentpack settings list"],
    )
    c = b.command(
        g,
        "set",
        settings.settings_set,
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
        audit.audit_list,
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
        capability.capability_keygen,
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
        capability.capability_mint,
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
        capability.capability_record,
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
        bridge_key.bridge_key_new,
        "make a bridge key and print its hash",
        "Make a bridge key; print it once (or write it to --out) with the hash to configure.",
        ["agentpack bridge-key new --out ~/.agentpack/bridge.key"],
    )
    c.add_argument("--out", metavar="FILE", help="write the key to this new file (mode 0600) instead of printing it")
    c = b.command(
        g,
        "hash",
        bridge_key.bridge_key_hash,
        "print the hash of a bridge key read from stdin",
        "Print the SHA-256 hash of a bridge key read from standard input or --file.",
        ["agentpack bridge-key hash < ~/.agentpack/bridge.key"],
    )
    c.add_argument("--file", help="read the key from this file")

    # reseal
    c = b.command(
        top,
        "reseal",
        reseal.reseal,
        "re-seal every stored secret under the newest key (offline, datastore)",
        "Re-seal every stored secret under the newest secrets key version, straight in the datastore\n"
        "(FIRESTORE_EMULATOR_HOST, or Google credentials). Resumable with --after; safe to run twice.\n"
        "Exit 1 if some records could not be re-sealed (they are listed).",
        ['AGENTPACK_SECRETS_KEYS=\'{"1": "...", "2": "..."}\' agentpack reseal'],
    )
    c.add_argument("--after", metavar="PATH", help="resume after this record (printed by an earlier run)")

    # staging and deployment
    c = b.command(
        top,
        "stage",
        deploy.stage,
        "build one deployable source folder per function (offline)",
        "Build build/functions/<name>/ for every function: its main.py, the shared/ modules it imports\n"
        "and requirements.txt. Works from a checkout or from an installed agentpack (then build/ is in\n"
        "the current directory).",
        ["agentpack stage", 'agentpack stage --out /tmp/build --capability-public-keys "$KEYS"'],
    )
    _staging_options(c)
    c = b.command(
        top,
        "deploy",
        deploy.deploy,
        "stage, then print (or --apply: run) every deploy command",
        "Stage every function, then print one 'gcloud functions deploy' per function and the\n"
        "'firebase deploy' of the Firestore rules and indexes; --apply runs them (gcloud and firebase\n"
        "signed in to the project). No secret value is in any command: see docs/deploy.md.",
        [
            "agentpack deploy --project my-project --region europe-west1",
            'agentpack deploy --project my-project --region europe-west1 --capability-public-keys "$KEYS" --apply',
        ],
    )
    c.add_argument("--project", required=True, help="the Google Cloud project ID")
    c.add_argument("--region", default="us-central1", help="the Cloud Functions region (default us-central1)")
    c.add_argument("--apply", action="store_true", help="run the commands instead of only printing them")
    _staging_options(c)

    # OAuth access tokens
    g = b.group(
        top,
        "token",
        "get, introspect and revoke OAuth access tokens",
        "OAuth 2.0 access tokens for an agent. The device key (AGENTPACK_DEVICE_KEY_FILE) is the client\n"
        "secret, its own agent the client_id (or AGENTPACK_AGENT_ID); or a key pair signs an assertion.\n"
        "Tokens to introspect or revoke are read from standard input, never from arguments.",
        ["agentpack token get --scope secrets/get", "agentpack token get --json | jq -r .access_token"],
    )
    c = b.command(
        g,
        "get",
        tokens.token_get,
        "get an access token (client credentials) and print it",
        "Get an access token for the agent: with the device key (client_secret_basic), or with a key pair\n"
        "(--key-pair FILE --key-id dk_..., private_key_jwt). Prints the token; --json prints the whole answer.",
        [
            "agentpack token get --scope secrets/get --scope secrets/list",
            "agentpack token get --resource https://reports.example.com --scope read:reports",
            "agentpack token get --key-pair agent.key --key-id dk_...",
        ],
    )
    c.add_argument(
        "--scope",
        action="append",
        help="a scope to ask for; repeat, or separate with commas (default: all the agent may have)",
    )
    c.add_argument("--resource", help="the token's audience, your service's URL (default: the issuer)")
    c.add_argument("--key-pair", metavar="FILE", help="the private key file (from 'keys keypair')")
    c.add_argument("--key-id", metavar="ID", help="the key ID device/issue gave the key pair")
    c = b.command(
        g,
        "introspect",
        tokens.token_introspect,
        "is a token live, and its claims (token on standard input)",
        "Ask the service whether a token (access or refresh) is live (RFC 7662). The caller is the bridge\n"
        "key, or a device key (its own tenant's tokens).",
        ["agentpack token get | agentpack token introspect"],
    )
    c.add_argument("--token-file", metavar="FILE", help="read the token from FILE instead of standard input")
    c = b.command(
        g,
        "revoke",
        tokens.token_revoke,
        "revoke a token of this agent (token on standard input)",
        "Revoke an access token, or a refresh token and its whole family (RFC 7009), as the agent it was\n"
        "issued to (its device key). Unknown tokens are accepted silently, as the service does.",
        ["agentpack token revoke < token.txt"],
    )
    c.add_argument("--token-file", metavar="FILE", help="read the token from FILE instead of standard input")
    login.add_commands(b, top)  # login --device, whoami (agentpack/cli/login.py)
    return parser
