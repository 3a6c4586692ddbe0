"""agentpack token: get, introspect and revoke OAuth access tokens. Tokens are never taken from arguments."""

from __future__ import annotations

import os
from pathlib import Path

from agentpack.cli.context import EXIT_OK, Context, UsageError, scopes
from agentpack.cli.files import read_input
from agentpack.client import Client
from agentpack.models import TokenAnswer, to_dict


def _device_key_client(ctx: Context, what: str) -> Client:
    client = ctx.client("agent")
    if client.credential_kind != "device_key":
        raise UsageError(f"{what} needs a device key as the client secret: set AGENTPACK_DEVICE_KEY_FILE")
    return client


def _read_token(ctx: Context) -> str:
    token = read_input(getattr(ctx.args, "token_file", None), "token: ").decode("ascii", "replace").strip()
    if not token:
        raise UsageError("no token on standard input")
    return token


def token_get(ctx: Context) -> int:
    chosen = " ".join(scopes(ctx.args.scope)) if ctx.args.scope is not None else None
    answer: TokenAnswer
    if ctx.args.key_pair is not None:
        if ctx.args.key_id is None:
            raise UsageError("--key-pair needs --key-id (the key ID device/issue gave the public key)")
        from agentpack.cli.capability import read_private_key

        try:
            seed = read_private_key(Path(ctx.args.key_pair))
        except (OSError, ValueError) as error:
            raise UsageError(
                f"{ctx.args.key_pair} does not hold a private key (from 'keys keypair'): {error}"
            ) from None
        answer = ctx.keyless_client().private_key_jwt_token(seed, ctx.args.key_id, chosen, resource=ctx.args.resource)
    else:
        if ctx.args.key_id is not None:
            raise UsageError("--key-id goes with --key-pair")
        client = _device_key_client(ctx, "token get")
        client_id = os.environ.get("AGENTPACK_AGENT_ID", "").strip() or None
        answer = client.client_credentials_token(chosen, resource=ctx.args.resource, auth="basic", client_id=client_id)
    if ctx.json:
        ctx.print_json(to_dict(answer))
    else:
        print(answer.access_token, file=ctx.out)
    return EXIT_OK


def token_introspect(ctx: Context) -> int:
    token = _read_token(ctx)
    client = ctx.client("any")
    if client.credential_kind == "token":
        raise UsageError("introspection takes the bridge key or a device key as the caller")
    return ctx.show(client.introspect(token))


def token_revoke(ctx: Context) -> int:
    token = _read_token(ctx)
    answer = _device_key_client(ctx, "token revoke").revoke_token(token)
    if ctx.json:
        ctx.print_json(to_dict(answer))
    else:
        ctx.note("revoked (or unknown: the service answers the same)")
    return EXIT_OK
