"""Build one self-contained source folder per function, ready for ``gcloud functions deploy``.

Each folder holds the function's main.py, the modules of shared/ it imports
(followed transitively), requirements.txt, and, when given, the capability
public keys as capability_keys.json (read by shared/config.py when
AGENTPACK_CAPABILITY_PUBLIC_KEYS is unset). Nothing else from the repo is needed.
"""

from __future__ import annotations

import argparse
import ast
import shutil
from pathlib import Path

from scripts.functions_index import ROOT, Function, all_functions

BUILD = ROOT / "build" / "functions"
SHARED = ROOT / "shared"


def shared_imports(source: Path) -> set[str]:
    """Names of shared/ modules that ``source`` imports directly."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "shared":
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("shared."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("shared."))
    return found


def needed_modules(function: Function) -> set[str]:
    needed: set[str] = set()
    pending = shared_imports(function.source)
    while pending:
        name = pending.pop()
        if name in needed:
            continue
        needed.add(name)
        pending |= shared_imports(SHARED / f"{name}.py")
    return needed


def stage(function: Function, build: Path = BUILD, capability_keys: str | None = None) -> Path:
    target = build / function.name
    if target.exists():
        shutil.rmtree(target)
    (target / "shared").mkdir(parents=True)
    shutil.copy2(function.source, target / "main.py")
    shutil.copy2(SHARED / "__init__.py", target / "shared" / "__init__.py")
    for module in sorted(needed_modules(function)):
        shutil.copy2(SHARED / f"{module}.py", target / "shared" / f"{module}.py")
    shutil.copy2(ROOT / "requirements.txt", target / "requirements.txt")
    if capability_keys is not None:
        (target / "capability_keys.json").write_text(capability_keys)
    return target


def checked_capability_keys(text: str) -> str:
    """The key set as canonical JSON, or exit: a malformed or non-strict key is never deployed."""
    from shared import errors, tokens
    from shared.config import DEV_ONLY_CAPABILITY_PUBLIC_KEY

    try:
        keyset = tokens.KeySet.from_json(text)
    except errors.ConfigRefused as refusal:
        raise SystemExit(f"error: {refusal.reason}") from None
    if any(keyset.public_key(kid) == DEV_ONLY_CAPABILITY_PUBLIC_KEY for kid in keyset):
        raise SystemExit("error: the dev capability key (emulator-config/) must never be deployed")
    return keyset.to_json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=BUILD, help="where to build (default: build/functions)")
    parser.add_argument("--capability-public-keys", help="JSON {kid: base64url public key} to bundle")
    args = parser.parse_args()
    keys = checked_capability_keys(args.capability_public_keys) if args.capability_public_keys else None
    for function in all_functions():
        print(stage(function, args.out, keys))


if __name__ == "__main__":
    main()
