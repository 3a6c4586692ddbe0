"""``python -m scripts.capability``: the older spelling of ``agentpack capability`` (same key files), for its callers.

Operator tool for capability tokens: make an offline Ed25519 signing key, mint tokens with it.

``keygen`` writes a new private key (the 32-byte seed, base64url, one line) to a new file
readable by its owner only, and prints the public key to configure: merge the printed JSON member
into AGENTPACK_CAPABILITY_PUBLIC_KEYS (a JSON object of kid -> public key); several kids may be
live at once, so add the new key, redeploy, mint with it, then drop the old one. The private key
is never printed and never leaves the file.

``mint`` signs a token for one agent and a set of routes with that file's key and prints the
token, alone, on standard output. It writes the token's claims (never the token) as JSON to
standard error, or to --claims-out: exactly the body of ``/capability/record``, so the mint can be
recorded for audit with the bridge key.
"""

from __future__ import annotations

import argparse
import json
import stat
import sys
from datetime import UTC, datetime
from pathlib import Path

from agentpack.cli.capability import MAX_TTL_SECONDS, read_private_key, write_private_key
from shared import crypto, ids, tokens


def keygen(args: argparse.Namespace) -> int:
    if tokens.KID.fullmatch(args.kid) is None:
        print("error: --kid must match [A-Za-z0-9._-]{1,64}", file=sys.stderr)
        return 2
    seed, public = crypto.new_signing_key()
    try:
        write_private_key(args.out, seed)
    except FileExistsError:
        print(f"error: {args.out} exists; refusing to overwrite a key file", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"error: cannot create {args.out}: {error.strerror}", file=sys.stderr)
        return 1
    encoded = tokens.b64encode(public)
    print(f"kid:        {args.kid}")
    print(f"public key: {encoded}")
    print("Add this member to AGENTPACK_CAPABILITY_PUBLIC_KEYS (a JSON object; keep the other live kids):")
    print(json.dumps({args.kid: encoded}))
    print(
        f"The private key is in {args.out} (mode 0600). Keep it offline; it never goes into the deployment.",
        file=sys.stderr,
    )
    return 0


def mint(args: argparse.Namespace) -> int:
    try:
        mode = args.key.stat().st_mode
        seed = read_private_key(args.key)
    except (OSError, ValueError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not a capability private key file"
        print(f"error: cannot read the key {args.key}: {reason}", file=sys.stderr)
        return 1
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(f"warning: others have access to {args.key}; chmod 600 it", file=sys.stderr)
    scopes = args.scope.split()
    if not ids.is_agent_id(args.agent):
        print("error: --agent must be an agent ID (agt_...)", file=sys.stderr)
        return 2
    if not 1 <= args.ttl <= MAX_TTL_SECONDS:
        print(
            f"error: --ttl must be 1 to {MAX_TTL_SECONDS} seconds (and at most the deployment's max)", file=sys.stderr
        )
        return 2
    try:
        claims = tokens.new_claims(args.agent, scopes, args.ttl, datetime.now(UTC), args.jti)
        token = tokens.sign(seed, args.kid, claims)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    record = {key: claims[key] for key in ("jti", "sub", "scope", "iat", "exp")} | {"kid": args.kid}
    if args.claims_out is not None:
        try:
            args.claims_out.write_text(json.dumps(record) + "\n")
        except OSError as error:
            print(f"error: cannot write {args.claims_out}: {error.strerror}; no token was printed", file=sys.stderr)
            return 1
    else:
        print(json.dumps(record), file=sys.stderr)
    print(token)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.capability",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  python -m scripts.capability keygen --kid cap-2026-11 --out ~/.agentpack/cap-2026-11.key\n"
            "  python -m scripts.capability mint --key ~/.agentpack/cap-2026-11.key --kid cap-2026-11 \\\n"
            '      --agent agt_0123456789ABCDEFGHIJkl --scope "secrets/get secrets/list" --ttl 300'
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser(
        "keygen",
        help="make a signing key: private key to a new 0600 file, public key printed",
        description="Make an Ed25519 signing key. The private key goes to a new file (mode 0600, never "
        "overwritten); the public key is printed for AGENTPACK_CAPABILITY_PUBLIC_KEYS.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python -m scripts.capability keygen --kid cap-2026-11 --out ~/.agentpack/cap-2026-11.key",
    )
    make.add_argument("--kid", required=True, help="key ID, [A-Za-z0-9._-]{1,64}, e.g. cap-2026-11")
    make.add_argument("--out", required=True, type=Path, help="the private key file to create")
    make.set_defaults(run=keygen)
    sign = sub.add_parser(
        "mint",
        help="mint a token: printed on stdout; its claims as JSON on stderr or --claims-out",
        description="Mint a capability token with a key file made by keygen. The token goes to standard "
        "output; its claims (the /capability/record body, never the token) to standard error or --claims-out.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "example:\n"
            "  python -m scripts.capability mint --key ~/.agentpack/cap-2026-11.key --kid cap-2026-11 \\\n"
            '      --agent agt_0123456789ABCDEFGHIJkl --scope "secrets/get secrets/list" --ttl 300 \\\n'
            "      --claims-out claims.json > token.txt"
        ),
    )
    sign.add_argument("--key", required=True, type=Path, help="private key file written by keygen")
    sign.add_argument("--kid", required=True, help="the key's ID, as configured in AGENTPACK_CAPABILITY_PUBLIC_KEYS")
    sign.add_argument("--agent", required=True, help="the agent ID the token speaks for (agt_...)")
    sign.add_argument("--scope", required=True, help='space-separated route names, e.g. "secrets/get secrets/list"')
    sign.add_argument(
        "--ttl", type=int, default=300, help="lifetime in seconds (default 300; at most the deployment's max)"
    )
    sign.add_argument("--jti", help="token ID, [A-Za-z0-9._-]{1,128} (default: random)")
    sign.add_argument("--claims-out", type=Path, help="write the claims JSON here instead of standard error")
    sign.set_defaults(run=mint)
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
