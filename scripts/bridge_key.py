"""Operator tool for the project bridge key.

``new`` makes a bridge key in the public format and prints it once, with the
SHA-256 hash to configure: the deployment holds only the hash (Secret Manager
secret ``agentpack-bridge-key-hashes``; comma-separate several hashes while
rotating). ``hash`` reads a key from standard input (never from an argument,
which would land in shell history) and prints its hash.
"""

from __future__ import annotations

import argparse
import sys

from shared import keys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/bridge-key",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  scripts/bridge-key new\n  scripts/bridge-key hash < bridge-key.txt",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("new", help="make a new bridge key and print it with its hash")
    sub.add_parser("hash", help="print the hash of a bridge key read from standard input")
    args = parser.parse_args(argv)
    if args.command == "new":
        key = keys.new_bridge_key()
        print("New bridge key. It is shown only this once: store it in your secret store now.", file=sys.stderr)
        print(f"bridge key: {key}")
        print(f"hash:       {keys.hash_key(key)}")
        print(
            "Configure the hash, never the key, in Secret Manager, e.g.:\n"
            "  printf %s HASH | gcloud secrets versions add agentpack-bridge-key-hashes --data-file=-\n"
            "While rotating, store 'OLDHASH,NEWHASH' so both keys work, then drop the old one.",
            file=sys.stderr,
        )
        return 0
    key = sys.stdin.readline().strip()
    if not keys.is_bridge_key(key):
        print("error: that is not a bridge key (wrong format or checksum)", file=sys.stderr)
        return 2
    print(keys.hash_key(key))
    return 0


if __name__ == "__main__":
    sys.exit(main())
